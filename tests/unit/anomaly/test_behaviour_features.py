"""Behavioural features: one definition, point in time, bounded, with documented answers for bad input."""

import collections

import numpy as np
import pandas as pd
import pytest

from families.transaction_anomaly.behaviour import (
    FEATURE_NAMES,
    MAX_GAP_S,
    MAX_RECENT,
    MAX_SEEN,
    InvalidTransaction,
    Profile,
    Txn,
    compute_offline,
    features,
    parse_transaction,
    reasons,
    replay_order,
    transactions_from_frame,
    update,
)
from families.transaction_anomaly.data import PATTERN_FEATURES, generate_transactions
from ledgerline.errors import DataError

T0 = pd.Timestamp("2026-03-02T12:00:00Z").value // 1_000_000
MIN = 60_000


def txn(minutes: float, amount: float = 20.0, **kw: str) -> Txn:
    fields = {"country": "GB", "category": "grocery", "channel": "pos", "device": "card-1", **kw}
    return Txn(T0 + int(minutes * MIN), abs(amount), amount < 0, **fields)


def record(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"customer_id": "c1", "timestamp": "2026-03-02T12:00:00Z", "amount": 12.5,
                               "currency": "GBP", "country": "GB", "merchant_category": "grocery",
                               "channel": "pos", "device_id": "card-1"}
    return {**base, **kw}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_transactions(20_000, seed=5)


def test_offline_features_never_look_ahead(table):
    full = compute_offline(table)
    cut = table["timestamp"].iloc[len(table) // 2]
    early = table[table["timestamp"] < cut]
    pd.testing.assert_frame_equal(compute_offline(early), full.loc[early.index])


def test_offline_features_equal_a_row_by_row_replay_of_the_same_functions(table):
    offline = compute_offline(table)
    txns = transactions_from_frame(table)
    profiles: dict[str, Profile] = {}
    for i in replay_order([t.ts_ms for t in txns]).tolist():
        p = profiles.setdefault(table["customer_id"].iloc[i], Profile())
        # through a JSON round trip, as the Redis store does
        p = Profile.from_json(p.to_json())
        assert list(features(p, txns[i]).values()) == offline.iloc[i].tolist()
        update(p, txns[i])
        profiles[table["customer_id"].iloc[i]] = p


def test_offline_features_are_independent_of_row_order_when_no_customer_has_ties(table):
    # ties are processed in row order (documented), so compare on a table without them
    untied = table.drop_duplicates(["customer_id", "timestamp"])
    shuffled = untied.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(compute_offline(shuffled).loc[untied.index], compute_offline(untied))


def test_a_hundred_thousand_rows_take_seconds():
    import time

    df = generate_transactions(100_000, seed=2)
    t = time.perf_counter()
    compute_offline(df)
    assert time.perf_counter() - t < 30  # about 3 s on an idle core


def test_cold_start_gives_profile_free_features_and_a_reason_that_says_so():
    p = Profile()
    f = features(p, txn(0))
    assert f["history_count"] == 0 and f["amount_log_z"] == 0 and f["hour_deviation"] == 0
    assert f["new_country"] == f["new_category"] == f["new_device"] == f["new_channel"] == 0
    assert f["seconds_since_last"] == MAX_GAP_S and f["count_1h"] == 0
    [r] = reasons(p, txn(0), f)
    assert r["feature"] == "history_count" and "first transaction" in r["text"]


def test_windows_count_earlier_purchases_and_ties_count_as_before():
    p = Profile()
    for m in (0, 30, 30):
        update(p, txn(m, 10.0))
    f = features(p, txn(30, 5.0))
    assert f["count_1h"] == 3 and f["sum_1h"] == 30.0 and f["seconds_since_last"] == 0.0
    f = features(p, txn(75))  # 0 is more than an hour before 75
    assert f["count_1h"] == 2 and f["count_24h"] == 3 and f["seconds_since_last"] == 45 * 60


def test_an_out_of_order_transaction_is_scored_at_its_own_time_and_inserted_in_order():
    p = Profile()
    update(p, txn(0))
    update(p, txn(120))
    f = features(p, txn(30))
    assert f["count_1h"] == 1 and f["count_24h"] == 1 and f["seconds_since_last"] == 0.0
    update(p, txn(30))
    assert p.recent_ts == sorted(p.recent_ts) and p.last_ms == T0 + 120 * MIN
    assert p.gap_n == 1  # only the in-order gap 0 -> 120 is a gap


def test_a_refund_is_scored_on_its_absolute_amount_and_leaves_the_profile_unchanged():
    p = Profile()
    update(p, txn(0, 40.0))
    update(p, txn(10, 44.0))
    before = p.to_json()
    f = features(p, txn(20, -42.0))
    assert f["is_refund"] == 1.0 and f["amount_eur"] == 42.0
    update(p, txn(20, -42.0))
    assert p.to_json() == before


def test_novelty_flags_fire_only_for_unseen_values():
    p = Profile()
    update(p, txn(0))
    f = features(p, txn(10, country="FR", device="dev-9"))
    assert (f["new_country"], f["new_device"], f["new_category"], f["new_channel"]) == (1, 1, 0, 0)


def test_the_profile_stays_bounded_whatever_the_history():
    p = Profile()
    for i in range(3 * MAX_RECENT):
        update(p, txn(i * 0.1, 5.0, country=f"C{i}", category=f"k{i}", device=f"d{i}"))
    assert len(p.recent_ts) == MAX_RECENT == len(p.recent_amt)
    assert len(p.countries) == len(p.categories) == len(p.devices) == MAX_SEEN
    assert features(p, txn(3 * MAX_RECENT * 0.1))["count_1h"] == MAX_RECENT
    assert len(p.to_json()) < 20_000


def test_the_profile_json_round_trip_is_exact_and_a_foreign_layout_is_refused():
    p = Profile()
    for m in range(20):
        update(p, txn(m * 37, 3.3 + m))
    assert Profile.from_json(p.to_json()) == p
    with pytest.raises(DataError, match="unknown layout"):
        Profile.from_json("[99]")


def test_a_known_record_parses_in_eur_and_a_negative_amount_is_a_refund():
    t = parse_transaction(record(amount=-10.0, currency="USD"))
    assert t.is_refund and t.amount_eur == pytest.approx(9.2)
    assert t.ts_ms == T0
    assert parse_transaction(record(amount=np.int64(7), timestamp="2026-03-02T13:00:00+01:00")) == parse_transaction(
        record(amount=7.0))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("currency", "XYZ", "unknown currency 'XYZ'"),
        ("currency", None, "unknown currency None"),
        ("amount", "12", "finite number"),
        ("amount", float("nan"), "finite number"),
        ("timestamp", "yesterday-ish", "not a timestamp"),
        ("timestamp", None, "is required"),
        ("timestamp", 1_772_452_800, "is a number"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(field, value, message):
    with pytest.raises(InvalidTransaction, match=message) as err:
        parse_transaction(record(**{field: value}))
    assert err.value.field == field
    assert isinstance(err.value, ValueError)


def test_a_timestamp_in_the_future_is_refused_beyond_five_minutes_of_skew():
    now = pd.Timestamp("2026-03-02T11:58:00Z")
    parse_transaction(record(), now=now)  # two minutes ahead: accepted
    with pytest.raises(InvalidTransaction, match="in the future") as err:
        parse_transaction(record(timestamp="2026-03-02T13:00:00Z"), now=now)
    assert err.value.field == "timestamp"


def test_offline_features_refuse_epoch_numbers_as_timestamps(table):
    bad = table.head(50).copy()
    bad["timestamp"] = bad["timestamp"].astype("int64")
    with pytest.raises(DataError, match="column 'timestamp' holds numbers"):
        compute_offline(bad)


def test_offline_features_refuse_an_unknown_currency_listing_it(table):
    bad = table.head(50).copy()
    bad.loc[bad.index[3], "currency"] = "DOGE"
    with pytest.raises(DataError, match=r"column 'currency' has unknown currencies \['DOGE'\]"):
        compute_offline(bad)


def test_the_top_reason_names_the_feature_the_injected_pattern_changed_in_most_frauds():
    df = generate_transactions(60_000, seed=11)
    txns = transactions_from_frame(df)
    customers = df["customer_id"].tolist()
    patterns = df["fraud_pattern"].tolist()
    profiles: dict[str, Profile] = {}
    hits: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    for i in replay_order([t.ts_ms for t in txns]).tolist():
        p = profiles.setdefault(customers[i], Profile())
        if patterns[i] is not None:
            f = features(p, txns[i])
            top = reasons(p, txns[i], f)[0]
            total[patterns[i]] += 1
            hits[patterns[i]] += top["feature"] in PATTERN_FEATURES[patterns[i]]
            assert top["text"] and top["score"] > 0
        update(p, txns[i])
    assert sum(total.values()) >= 250
    assert sum(hits.values()) / sum(total.values()) >= 0.8, {k: hits[k] / total[k] for k in total}


def test_the_amount_reason_shows_the_value_and_the_customers_typical_value():
    p = Profile()
    for m in range(30):
        update(p, txn(m * 600, 40.0 + (m % 5)))
    t = txn(30 * 600, 2340.0)
    r = reasons(p, t, features(p, t))[0]
    assert r["feature"] == "amount" and r["value"] == 2340.0
    assert r["typical"] == pytest.approx(41.9, abs=0.5)
    assert r["text"].startswith("amount 2,340.00 vs typical 41.")


def test_the_feature_names_are_the_offline_columns(table):
    assert list(compute_offline(table.head(100)).columns) == list(FEATURE_NAMES)
    assert np.isfinite(compute_offline(table.head(500)).to_numpy()).all()
