"""The transaction-anomaly family's data contract: holdout by time, labels kept out of the model."""

from __future__ import annotations

from families.transaction_anomaly.data import generate_transactions
from features.spec import LABEL_COLUMN, PartialSpec
from training.family import get_family


def test_a_table_with_a_time_column_but_no_customer_is_split_by_time():
    family = get_family("transaction-anomaly")
    raw = generate_transactions(2000, seed=5).drop(columns=["customer_id"]).sample(frac=1.0, random_state=1)
    spec = family.infer_spec(raw, target="is_fraud", positive_label="1", partial=PartialSpec(), name="t")
    assert "timestamp" in spec.roles and "customer" not in spec.roles
    train, test = family.split(family.conform(raw, spec), spec, seed=0)
    assert train["timestamp"].max() <= test["timestamp"].min()
    assert len(test) == 400


def test_without_a_time_column_the_holdout_is_random_and_stratified_on_the_label():
    family = get_family("transaction-anomaly")
    raw = generate_transactions(4000, seed=5, fraud_rate=0.02).drop(columns=["customer_id", "timestamp"])
    spec = family.infer_spec(raw, target="is_fraud", positive_label="1", partial=PartialSpec(passthrough=["fraud_pattern"]), name="t")
    train, test = family.split(family.conform(raw, spec), spec, seed=0)
    assert abs(train[LABEL_COLUMN].mean() - test[LABEL_COLUMN].mean()) < 0.005


def test_the_label_and_evaluation_columns_never_reach_the_forest():
    family = get_family("transaction-anomaly")
    raw = generate_transactions(3000, seed=2).drop(columns=["customer_id", "timestamp"])
    spec = family.infer_spec(raw, target="is_fraud", positive_label="1", partial=PartialSpec(passthrough=["fraud_pattern"]), name="t")
    train, _ = family.split(family.conform(raw, spec), spec, seed=0)
    model = family.train(train, spec, family.params(0, {"n_estimators": 20}))
    assert not {"is_fraud", "fraud_pattern", LABEL_COLUMN} & set(model.columns_)  # type: ignore[attr-defined]
