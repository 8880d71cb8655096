"""Profiles replayed from a training window, and re-sent transactions (real Redis on 127.0.0.1:6379, db 11,
a key prefix of each test's own, cleaned up)."""

import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from families.transaction_anomaly.behaviour import (
    MAX_SEEN_IDS,
    Profile,
    fold,
    parse_transaction,
    replay_customers,
    replay_order,
    transactions_from_frame,
    update,
)
from families.transaction_anomaly.data import generate_transactions
from families.transaction_anomaly.profiles import MemoryProfileStore, RedisProfileStore

REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def store() -> Iterator[RedisProfileStore]:
    s = RedisProfileStore(REDIS_URL, prefix=f"test-replay-{uuid.uuid4().hex}:", socket_timeout_s=1.0)
    yield s
    s.delete_all()
    s.close()


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    df = generate_transactions(3000, seed=4)
    return df.sample(frac=1.0, random_state=1)  # not in time order: the replay orders it


def record(row: pd.Series) -> dict[str, object]:
    rec = row.drop(["is_fraud", "fraud_pattern"]).to_dict()
    rec["timestamp"] = row["timestamp"].isoformat()
    rec["amount"] = float(row["amount"])
    return rec


def _global_replay(df: pd.DataFrame) -> dict[str, Profile]:
    """compute_offline's loop: every row in time order (ties in row order) through update."""
    txns = transactions_from_frame(df, with_ids=True)
    customers = df["customer_id"].astype(str).tolist()
    out: dict[str, Profile] = {}
    for i in replay_order([t.ts_ms for t in txns]).tolist():
        update(out.setdefault(customers[i], Profile()), txns[i])
    return out


def test_replay_per_customer_ends_with_the_profiles_of_the_training_replay(table):
    replayed = {c: (p, rows) for c, p, rows in replay_customers(table)}
    expected = _global_replay(table)
    assert set(replayed) == set(expected) == set(table["customer_id"].astype(str))
    for customer, (profile, rows) in replayed.items():
        assert profile.to_json() == expected[customer].to_json()
        mine = table[table["customer_id"] == customer]
        assert rows == len(mine)
        assert profile.n == int((mine["amount"] >= 0).sum())  # refunds are not folded in
    again = {c: p.to_json() for c, p, _ in replay_customers(table)}
    assert again == {c: p.to_json() for c, (p, _) in replayed.items()}  # deterministic


def test_a_profile_stored_before_ids_were_kept_still_reads():
    p = Profile(n=3, log_mean=1.0, last_ms=5)
    legacy = p.to_json().rsplit(",", 1)[0] + "]"  # the 18-field layout
    assert Profile.from_json(legacy).n == 3 and Profile.from_json(legacy).seen_ids == []


def test_fold_counts_a_re_sent_transaction_once_and_remembers_a_bounded_number_of_ids(table):
    rec = record(table.iloc[0])
    p = Profile()
    t = parse_transaction(rec)
    assert t.txn_id == rec["transaction_id"]
    assert fold(p, t) is True and fold(p, t) is False and p.n == 1
    base = pd.Timestamp(rec["timestamp"])
    for i in range(MAX_SEEN_IDS + 10):
        fold(p, parse_transaction({**rec, "transaction_id": f"x{i}",
                                   "timestamp": (base + pd.Timedelta(minutes=i + 1)).isoformat()}))
    assert p.n == MAX_SEEN_IDS + 11 and len(p.seen_ids) == MAX_SEEN_IDS and p.seen_ids[-1] == f"x{MAX_SEEN_IDS + 9}"
    assert fold(p, parse_transaction({**rec, "transaction_id": "x0"}))  # forgotten: counted again


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_a_re_sent_transaction_changes_the_profile_once_one_by_one_and_in_a_batch(table, store, kind):
    s = store if kind == "redis" else MemoryProfileStore()
    rows = table.sort_values("timestamp")
    customer = str(rows["customer_id"].iloc[0])
    recs = [record(r) for _, r in rows[rows["customer_id"] == customer].head(4).iterrows()]
    txns = [parse_transaction(r) for r in recs]
    s.score_and_update(customer, txns[0], lambda p, f, ok: f)
    again = s.score_and_update(customer, txns[0], lambda p, f, ok: f)  # a client's retry
    assert again.features["history_count"] == 1.0
    assert s.get(customer).n == 1
    s.score_many([(customer, txns[1]), (customer, txns[1]), (customer, txns[2]), (customer, txns[0])],
                 lambda p, t, f, ok: f)
    assert s.get(customer).n == 3
    assert s.get(customer).seen_ids == [t.txn_id for t in txns[:3]]
