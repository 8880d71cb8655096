"""The transaction generator: deterministic, realistic, with the five fraud patterns at about 0.5 %."""

import pandas as pd
import pytest

from families.transaction_anomaly.data import DEFAULT_DATASET, FRAUD_PATTERNS, FX_TO_EUR, generate_transactions
from ledgerline.errors import DataError


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_transactions(40_000, seed=7)


def test_the_same_seed_gives_the_same_table_and_another_seed_a_different_one(table):
    assert table.equals(generate_transactions(40_000, seed=7))
    assert not table.equals(generate_transactions(40_000, seed=8))


def test_the_table_has_the_documented_columns_and_exactly_the_requested_rows(table):
    assert len(table) == 40_000
    assert list(table.columns) == [
        "transaction_id", "customer_id", "timestamp", "amount", "currency", "merchant_category",
        "merchant_id", "channel", "country", "device_id", "is_fraud", "fraud_pattern",
    ]
    assert table["transaction_id"].is_unique
    assert table["timestamp"].is_monotonic_increasing
    assert str(table["timestamp"].dt.tz) == "UTC"
    assert set(table["channel"]) == {"pos", "online", "atm"}
    assert set(table["currency"]) <= set(FX_TO_EUR)
    assert (table["amount"] > 0).all()
    for col in (DEFAULT_DATASET.id_column, DEFAULT_DATASET.customer_column, *DEFAULT_DATASET.categorical_columns):
        assert col in table.columns


def test_fraud_is_about_half_a_percent_across_all_five_patterns(table):
    assert 0.004 <= table["is_fraud"].mean() <= 0.006
    counts = table["fraud_pattern"].value_counts()
    assert set(counts.index) == set(FRAUD_PATTERNS)
    assert (counts >= 15).all()
    assert (table["is_fraud"] == table["fraud_pattern"].notna()).all()


def test_each_pattern_looks_like_its_description(table):
    fraud = table[table["is_fraud"] == 1]
    normal = table[table["is_fraud"] == 0]
    testing = fraud[fraud["fraud_pattern"] == "card_testing"]
    assert (testing["amount"] < 3).all() and (testing["channel"] == "online").all()
    atm = fraud[fraud["fraud_pattern"] == "atm_cashout"]
    assert (atm["channel"] == "atm").all() and atm["timestamp"].dt.hour.between(1, 4).all()
    assert atm["amount"].median() > 5 * normal["amount"].median()
    ato = fraud[fraud["fraud_pattern"] == "account_takeover"]
    assert ato["device_id"].str.startswith("ato-").all() and (ato["channel"] == "online").all()
    shift = fraud[fraud["fraud_pattern"] == "category_shift"]
    assert set(shift["merchant_category"]) <= {"electronics", "jewelry", "gambling", "luxury_goods", "crypto_exchange"}
    assert normal["timestamp"].dt.hour.between(6, 23).all()


def test_a_hundred_thousand_rows_take_seconds():
    import time

    t = time.perf_counter()
    generate_transactions(100_000, seed=1)
    assert time.perf_counter() - t < 10


def test_an_out_of_range_size_is_refused_with_the_limit():
    with pytest.raises(DataError, match="n_rows must be between 200"):
        generate_transactions(10, seed=1)
