"""Model tests for transaction-anomaly: labels never reach the forest, the budget holds, frauds rank high."""

import numpy as np
import pandas as pd
import pytest

from families.transaction_anomaly.data import generate_transactions
from families.transaction_anomaly.fit import (
    evaluate,
    precision_recall_figure,
    prepare_features,
    score_distribution_figure,
    split,
    train,
)
from families.transaction_anomaly.scoring import AnomalyScorer
from ledgerline.errors import DataError

PARAMS = {"n_estimators": 100, "random_state": 3}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_transactions(40_000, seed=17)


@pytest.fixture(scope="module")
def features(table: pd.DataFrame) -> pd.DataFrame:
    return prepare_features(table)


@pytest.fixture(scope="module")
def fitted(table, features):
    train_df, test_df = split(table)
    return train(features.loc[train_df.index], PARAMS), train_df, test_df


def assert_same_forest(a, b) -> None:
    assert a.threshold_ == b.threshold_ and a.columns_ == b.columns_
    for ta, tb, fa, fb in zip(a.iforest_.estimators_, b.iforest_.estimators_,
                              a.iforest_.estimators_features_, b.iforest_.estimators_features_, strict=True):
        np.testing.assert_array_equal(fa, fb)
        for attr in ("feature", "threshold", "children_left", "children_right", "n_node_samples"):
            np.testing.assert_array_equal(getattr(ta.tree_, attr), getattr(tb.tree_, attr))


def shuffled_labels(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    out = df.copy()
    perm = np.random.default_rng(seed).permutation(len(df))
    out["is_fraud"] = df["is_fraud"].to_numpy()[perm]
    out["fraud_pattern"] = df["fraud_pattern"].to_numpy()[perm]
    return out


def test_shuffling_the_label_column_leaves_the_fitted_forest_unchanged(table):
    small = table.head(8_000)
    a = train(prepare_features(small), PARAMS)
    b = train(prepare_features(shuffled_labels(small, 1)), PARAMS)
    assert_same_forest(a, b)


def test_shuffling_labels_leaves_a_forest_on_bring_your_own_columns_unchanged(table):
    own = table.drop(columns=["customer_id", "timestamp"]).head(8_000)
    a = train(prepare_features(own), PARAMS)
    b = train(prepare_features(shuffled_labels(own, 2)), PARAMS)
    assert_same_forest(a, b)
    assert "is_fraud" not in a.columns_ and "fraud_pattern" not in a.columns_


@pytest.mark.parametrize("budget", [0.005, 0.02])
def test_the_threshold_gives_the_alert_budget_on_the_training_data(features, budget):
    X = features.head(20_000)
    model = train(X, {**PARAMS, "alert_budget": budget})
    rate = float((model.score(X) >= model.threshold_).mean())
    assert rate == pytest.approx(budget, rel=0.05)
    assert model.train_alert_rate_ == pytest.approx(rate)
    assert model.medium_threshold_ <= model.threshold_


def test_on_the_time_ordered_holdout_frauds_rank_high_and_alerts_stay_near_budget(fitted, features):
    model, _, test_df = fitted
    m = evaluate(model, features.loc[test_df.index], test_df["is_fraud"], test_df["fraud_pattern"])
    assert 0.0025 <= m["alert_rate"] <= 0.01
    assert m["roc_auc"] > 0.9 and m["pr_auc"] > 0.2
    assert m["precision_at_budget"] > 0.3 and m["recall_at_budget"] > 0.25
    assert {f"recall_{p}" for p in test_df["fraud_pattern"].dropna().unique()} <= set(m)
    assert m["recall_account_takeover"] > 0.8


def test_without_labels_evaluation_reports_the_alert_rate_only(fitted, features):
    model, _, test_df = fitted
    assert set(evaluate(model, features.loc[test_df.index])) == {"alert_rate", "threshold", "alert_budget"}


def test_the_holdout_is_the_latest_time_and_random_stratified_without_a_time_column(table):
    train_df, test_df = split(table, test_fraction=0.2)
    assert len(test_df) == len(table) // 5
    assert train_df["timestamp"].max() <= test_df["timestamp"].min()
    untimed = table.drop(columns=["timestamp"])
    tr, te = split(untimed, test_fraction=0.2, seed=1)
    assert len(te) == len(table) // 5
    assert te["is_fraud"].mean() == pytest.approx(untimed["is_fraud"].mean(), abs=0.0005)
    assert not te.index.equals(untimed.index[-len(te):])


def test_bring_your_own_table_trains_on_its_columns_and_leaves_out_ids(table):
    own = pd.DataFrame({"transaction_id": table["transaction_id"], "amount": table["amount"],
                        "channel": table["channel"], "merchant_id": table["merchant_id"],
                        "is_fraud": table["is_fraud"]}).head(5_000)
    own.loc[own.index[:10], "amount"] = np.nan
    X = prepare_features(own)
    assert list(X.columns) == ["amount", "channel"]  # merchant_id has too many distinct values
    model = train(X, PARAMS)
    rows = X.head(20)
    np.testing.assert_array_equal(model.encode(rows), np.vstack([model.encode_record(r) for r in rows.to_dict("records")]))
    unseen = model.encode_record({"amount": "junk", "channel": "teleport"})
    assert unseen[0] == model.fill_values_["amount"] and unseen[1] == -1
    with pytest.raises(ValueError, match="not trained on behavioural features"):
        AnomalyScorer.from_detector(model)


def test_bad_parameters_are_refused_naming_them(features):
    with pytest.raises(DataError, match="unknown anomaly parameters \\['depth'\\]"):
        train(features.head(500), {"depth": 3})
    with pytest.raises(DataError, match="alert_budget must be between 0 and 0.5"):
        train(features.head(500), {"alert_budget": 0.9})


def test_the_plots_show_the_threshold_and_the_precision_recall_curve(fitted, features):
    model, _, test_df = fitted
    scores = model.score(features.loc[test_df.index])
    fig = score_distribution_figure(scores, model.threshold_, test_df["is_fraud"].to_numpy())
    assert any(line.get_xdata()[0] == model.threshold_ for line in fig.axes[0].get_lines())
    fig = precision_recall_figure(scores, test_df["is_fraud"].to_numpy(), model.threshold_)
    assert fig.axes[0].get_xlabel() == "recall" and len(fig.axes[0].get_lines()) == 3


def test_served_scores_equal_the_trained_model_scores(fitted, features):
    model, _, test_df = fitted
    scorer = AnomalyScorer.from_detector(model)
    X = features.loc[test_df.index].head(300)
    served = [scorer.forest.anomaly_score_one(model.encode_record(r)) for r in X.to_dict("records")]
    np.testing.assert_allclose(served, model.score(X), rtol=0, atol=1e-9)
