"""The Redis profile store (real Redis on 127.0.0.1:6379, db 11, a unique key prefix, cleaned up)."""

import threading
import time
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import redis

from families.transaction_anomaly.behaviour import (
    FEATURE_NAMES,
    InvalidTransaction,
    Profile,
    compute_offline,
    parse_transaction,
)
from families.transaction_anomaly.data import generate_transactions
from families.transaction_anomaly.fit import train
from families.transaction_anomaly.profiles import (
    MemoryProfileStore,
    ProfileStoreError,
    ProfileStoreUnavailable,
    RedisProfileStore,
)
from families.transaction_anomaly.scoring import AnomalyScorer, score_transaction

REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def store() -> Iterator[RedisProfileStore]:
    s = RedisProfileStore(REDIS_URL, prefix=f"test-anomaly-{uuid.uuid4().hex}:", socket_timeout_s=1.0)
    yield s
    s.delete_all()
    s.close()


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_transactions(12_000, seed=9)


@pytest.fixture(scope="module")
def scorer(table: pd.DataFrame) -> AnomalyScorer:
    return AnomalyScorer.from_detector(train(compute_offline(table), {"n_estimators": 50}))


def as_record(row: pd.Series) -> dict[str, object]:
    rec = row.drop(["is_fraud", "fraud_pattern"]).to_dict()
    rec["timestamp"] = row["timestamp"].isoformat()
    rec["amount"] = float(row["amount"])
    return rec


def test_features_served_through_redis_equal_the_offline_computation_for_the_same_stream(table, scorer, store):
    customers = table["customer_id"].value_counts().index[:6]
    stream = table[table["customer_id"].isin(customers)].head(400)
    assert len(stream) >= 300
    offline = compute_offline(stream)
    for idx, row in stream.iterrows():
        answer = score_transaction(as_record(row), store, scorer)
        assert answer["profile_available"] is True
        assert [answer["features"][c] for c in FEATURE_NAMES] == offline.loc[idx].tolist()
    assert store.get(customers[0]).n == int((stream["customer_id"] == customers[0]).sum())


def test_a_new_customer_is_a_cold_start_and_the_reason_says_so(table, scorer, store):
    answer = score_transaction(as_record(table.iloc[0]), store, scorer)
    assert answer["cold_start"] is True and answer["features"]["history_count"] == 0
    assert answer["reasons"][0]["feature"] == "history_count"
    assert 0 < answer["anomaly_score"] <= 1 and answer["risk_level"] in {"low", "medium", "high"}


def test_a_refund_is_answered_and_leaves_the_stored_profile_unchanged(table, scorer, store):
    rec = as_record(table.iloc[0])
    score_transaction(rec, store, scorer)
    before = store.get(rec["customer_id"]).to_json()
    answer = score_transaction({**rec, "amount": -5.0}, store, scorer)
    assert answer["features"]["is_refund"] == 1.0
    assert store.get(rec["customer_id"]).to_json() == before


@pytest.mark.parametrize(("field", "value"), [("currency", "XYZ"), ("timestamp", "2099-01-01T00:00:00Z"),
                                              ("customer_id", ""), ("amount", None)])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(table, scorer, store, field, value):
    rec = {**as_record(table.iloc[0]), field: value}
    with pytest.raises(InvalidTransaction) as err:
        score_transaction(rec, store, scorer, now=pd.Timestamp("2026-06-01T00:00:00Z"))
    assert err.value.field == field
    assert list(store._client.scan_iter(match=store.prefix + "*")) == []


def test_an_out_of_order_transaction_gets_the_documented_answer(table, scorer, store):
    rec = as_record(table.iloc[0])
    score_transaction(rec, store, scorer)
    late = pd.Timestamp(rec["timestamp"]) - pd.Timedelta(minutes=30)
    answer = score_transaction({**rec, "timestamp": late.isoformat()}, store, scorer)
    assert answer["features"]["seconds_since_last"] == 0.0 and answer["features"]["count_1h"] == 0
    assert store.get(rec["customer_id"]).last_ms == parse_transaction(rec).ts_ms


def test_concurrent_updates_of_one_customer_are_never_lost(table, store):
    rec = as_record(table.iloc[0])
    base = pd.Timestamp(rec["timestamp"])
    txns = [parse_transaction({**rec, "transaction_id": f"t-{i}", "timestamp": (base + pd.Timedelta(seconds=i)).isoformat()})
            for i in range(40)]

    def work(chunk: list) -> None:
        for t in chunk:
            store.score_and_update("c-shared", t, lambda p, f, ok: None)

    threads = [threading.Thread(target=work, args=(txns[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    final = store.get("c-shared")
    assert final.n == 40 and sorted(final.recent_ts) == [t.ts_ms for t in txns]


def test_with_redis_down_the_answer_is_profile_free_flagged_and_counted(table, scorer):
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    down = RedisProfileStore(f"redis://127.0.0.1:{port}/0", prefix="never:", retry_after_s=60)
    rec = as_record(table.iloc[5])
    answer = score_transaction(rec, down, scorer)
    assert answer["profile_available"] is False and answer["cold_start"] is False
    assert answer["features"]["history_count"] == 0
    assert answer["reasons"][0]["feature"] == "profile" and "unavailable" in answer["reasons"][0]["text"]
    t = time.perf_counter()
    score_transaction(rec, down, scorer)  # skips Redis while it is marked down
    assert time.perf_counter() - t < 0.01
    stats = down.stats()
    assert stats["profile_store_available"] == 0.0
    assert stats["profile_store_unavailable_total"] == 1.0 and stats["profile_fallback_answers_total"] == 2.0
    with pytest.raises(ProfileStoreUnavailable, match="unreachable"):
        down.get("c1")


def _down_store() -> RedisProfileStore:
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return RedisProfileStore(f"redis://127.0.0.1:{port}/0", prefix="never:", retry_after_s=60)


def test_during_an_outage_a_large_amount_is_still_an_alert_and_a_typical_one_is_not(table, scorer):
    """The profile-free forest answers while Redis is down: without it a customer looks new, and a
    2,500 EUR payment (training amounts: median about 30) passed as "low risk"."""
    down = _down_store()
    row = as_record(table.iloc[5])
    large = score_transaction({**row, "amount": 2500.0}, down, scorer)
    typical = score_transaction({**row, "amount": float(table["amount"].median())}, down, scorer)
    assert large["profile_available"] is False and large["is_anomaly"] is True and large["risk_level"] == "high"
    assert typical["is_anomaly"] is False and typical["risk_level"] == "low"
    assert "transaction alone" in large["reasons"][0]["text"]
    # batches take the same path
    scored = down.score_many([("c1", parse_transaction({**row, "amount": 2500.0})),
                              ("c2", parse_transaction(row))], scorer.explain)
    finished = scorer.finish([x.result for x in scored], [x.features for x in scored])
    one = score_transaction(row, down, scorer)
    assert [(a["anomaly_score"], a["is_anomaly"]) for a in finished] == [
        (large["anomaly_score"], True), (one["anomaly_score"], one["is_anomaly"])]


def test_the_profile_free_forest_alerts_at_about_the_alert_budget(table, scorer):
    assert scorer.outage is not None and scorer.outage.columns == ("amount_eur", "is_refund", "hour_of_day")
    feats = compute_offline(table)
    X = feats[list(scorer.outage.columns)].to_numpy(dtype=float)
    rate = float((scorer.outage.forest.anomaly_score(X) >= scorer.outage.threshold).mean())
    assert 0.001 <= rate <= 0.02  # budget 0.005 on the training rows


def test_without_a_profile_free_forest_or_with_outage_fail_answers_are_refused_not_guessed(table):
    detector = train(compute_offline(table), {"n_estimators": 20})
    refuse = AnomalyScorer.from_detector(detector, outage="fail")
    del detector.profile_free_  # a version trained before the profile-free forest existed
    old = AnomalyScorer.from_detector(detector)
    row = as_record(table.iloc[5])
    for s in (refuse, old):
        with pytest.raises(ProfileStoreUnavailable, match="cannot score without it"):
            score_transaction(row, _down_store(), s)
    with pytest.raises(ValueError, match="outage must be one of"):
        AnomalyScorer.from_detector(detector, outage="guess")


def test_the_memory_store_answers_like_the_redis_store(table, scorer, store):
    stream = table[table["customer_id"] == table["customer_id"].iloc[0]].head(50)
    memory = MemoryProfileStore()
    for _, row in stream.iterrows():
        a = score_transaction(as_record(row), memory, scorer)
        b = score_transaction(as_record(row), store, scorer)
        assert a == b
    assert memory.get(stream["customer_id"].iloc[0]) == store.get(stream["customer_id"].iloc[0])


def test_profiles_expire_after_the_ttl(table, scorer):
    s = RedisProfileStore(REDIS_URL, prefix=f"test-anomaly-{uuid.uuid4().hex}:", ttl_s=100)
    try:
        score_transaction(as_record(table.iloc[0]), s, scorer)
        ttl = redis.Redis.from_url(REDIS_URL).ttl(s.key(table["customer_id"].iloc[0]))
        assert 0 < ttl <= 100
    finally:
        s.delete_all()


def test_a_corrupt_stored_profile_is_reported_not_silently_reset(store):
    store._client.set(store.key("c-bad"), "[42]")
    with pytest.raises(ProfileStoreError, match="customer 'c-bad' is corrupt"):
        store.get("c-bad")
    assert Profile() == store.get("c-new")
