import os

import numpy as np
import pytest

from families.credit_risk.data import credit_spec, generate_loan_applications
from features.spec import conform
from features.transform import TabularFeatures
from ledgerline.errors import LedgerlineError
from ledgerline.families import GatePolicy, MetricRule, UnknownFamily
from ledgerline.metrics import binary_metrics, ks_statistic
from ledgerline.settings import Settings
from training.gate import decide


def test_record_and_frame_transforms_agree_including_unknowns_and_missing():
    spec = credit_spec()
    df = conform(generate_loan_applications(400, seed=5), spec)
    tf = TabularFeatures(spec.numeric, spec.categorical).fit(df)
    records = df.head(30).to_dict("records")
    records[0]["purpose"] = "crypto"  # unknown category -> all zeros
    records[1]["annual_income"] = None
    frame = df.head(30).copy()
    frame.loc[0, "purpose"] = "crypto"
    frame.loc[1, "annual_income"] = np.nan
    a, b = tf.transform(frame), tf.transform_records(records)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b))
    purpose_cols = [i for i, n in enumerate(tf.feature_names_out_) if n.startswith("purpose=")]
    assert a[0, purpose_cols].sum() == 0


def test_batch_record_transform_equals_the_frame_transform_and_row_by_row():
    spec = credit_spec()
    df = conform(generate_loan_applications(1500, seed=7), spec)
    tf = TabularFeatures(spec.numeric, spec.categorical).fit(df.head(400))
    frame = df.iloc[400:].reset_index(drop=True).copy()
    rng = np.random.default_rng(1)
    for col in [*spec.numeric, *spec.categorical]:  # sprinkle missing values over every column
        frame.loc[rng.random(len(frame)) < 0.05, col] = None
    frame.loc[3, "purpose"] = "crypto"  # unknown category
    records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    records[5]["term_months"] = 36  # ints are numbers too
    frame.loc[5, "term_months"] = 36
    del records[7]["home_ownership"]  # an absent key is missing
    frame.loc[7, "home_ownership"] = None
    a, b = tf.transform(frame), tf.transform_records(records)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (1100, len(tf.feature_names_out_))
    np.testing.assert_array_equal(a, b)  # NaN positions included
    rows = np.vstack([tf.transform_records([r]) for r in records])
    np.testing.assert_array_equal(rows, b)
    assert tf.transform_records([]).shape == (0, len(tf.feature_names_out_))


def test_contributions_fold_back_onto_input_features():
    spec = credit_spec()
    df = conform(generate_loan_applications(200, seed=5), spec)
    tf = TabularFeatures(spec.numeric, spec.categorical).fit(df)
    contribs = np.random.default_rng(0).normal(size=(4, len(tf.feature_names_out_) + 1))
    folded = tf.aggregate_contributions(contribs)
    assert folded.shape == (4, len(spec.feature_names))
    np.testing.assert_allclose(folded.sum(axis=1), contribs[:, :-1].sum(axis=1))


def test_ks_of_perfect_and_useless_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert ks_statistic(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) == pytest.approx(1.0)
    assert ks_statistic(y, np.full(6, 0.5)) <= 0.5
    m = binary_metrics(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert m["roc_auc"] == 1.0 and m["brier"] < 0.1


def _metrics(auc: float) -> dict[str, float]:
    return {"roc_auc": auc, "pr_auc": 0.3, "brier": 0.09}


def _credit_policy(**thresholds: float) -> GatePolicy:
    from training.family import get_family

    return get_family("credit-risk").gate_policy(Settings(families={"credit-risk": {"gate": thresholds}}))


def test_gate_passes_a_good_first_model_and_refuses_one_below_the_floor():
    t = _credit_policy(min_roc_auc=0.7, tolerance=0.01)
    assert decide(_metrics(0.78), t).passed
    low = decide(_metrics(0.65), t)
    assert not low.passed and low.reasons == ["roc_auc 0.6500 < floor 0.7000"]


def test_gate_refuses_a_challenger_worse_than_the_champion_beyond_tolerance():
    t = _credit_policy(min_roc_auc=0.5, tolerance=0.01)
    worse = decide(_metrics(0.74), t, champion=_metrics(0.78), champion_version="3")
    assert not worse.passed and "worse than tolerance 0.0100 of champion v3" in worse.reasons[0]
    close = decide(_metrics(0.775), t, champion=_metrics(0.78), champion_version="3")
    assert close.passed


def test_settings_honour_mlflow_tracking_uri_and_prefer_our_own(monkeypatch):
    monkeypatch.delenv("LEDGERLINE_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert Settings().tracking_uri == "http://mlflow.example:5000"
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", "http://ours:5000")
    assert Settings().tracking_uri == "http://ours:5000"



def test_a_family_reads_its_own_settings_with_its_env_prefix_the_old_names_and_explicit_values(monkeypatch):
    from families.credit_risk.settings import CreditRiskSettings
    from families.transaction_anomaly.settings import TransactionAnomalySettings

    for name in [n for n in os.environ if n.startswith("LEDGERLINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LEDGERLINE_CREDIT_GATE__MIN_ROC_AUC", "0.81")  # the name before the move: still read
    monkeypatch.setenv("LEDGERLINE_SERVING_PROFILE_STORE_URL", "memory")
    assert CreditRiskSettings.of().gate.min_roc_auc == 0.81
    assert TransactionAnomalySettings.of().profile_store_url == "memory"
    monkeypatch.setenv("LEDGERLINE_CREDIT_RISK_GATE__MIN_ROC_AUC", "0.77")  # the new name wins
    monkeypatch.setenv("LEDGERLINE_CREDIT_RISK_THRESHOLDS", '{"loans": 0.3}')
    own = CreditRiskSettings.of(Settings().families)
    assert own.gate.min_roc_auc == 0.77 and own.threshold_for("loans") == 0.3 and own.threshold_for("x", 0.1) == 0.1
    # explicit values (a platform settings object's ``families``) win over the environment
    explicit = Settings(families={"credit-risk": {"gate": {"min_roc_auc": 0.6}, "decision_threshold": 0.4}})
    assert CreditRiskSettings.of(explicit.families).gate.min_roc_auc == 0.6
    with pytest.raises(LedgerlineError, match="decision_thresh"):
        CreditRiskSettings.of({"credit-risk": {"decision_thresh": 0.4}})
    with pytest.raises(ValueError, match="unknown model families"):
        Settings(families={"credit": {}})


def test_gate_checks_lower_is_better_metrics_and_bands_by_their_direction():
    policy = GatePolicy((MetricRule("mase", "lower", bound=1.0, tolerance=0.05), MetricRule("alert_rate", "higher", band=(0.004, 0.006))))
    ok = decide({"mase": 0.8, "alert_rate": 0.005}, policy, champion={"mase": 0.78, "alert_rate": 0.005}, champion_version="2")
    assert ok.passed, ok.reasons
    worse = decide({"mase": 0.9, "alert_rate": 0.009}, policy, champion={"mase": 0.8}, champion_version="2")
    assert not worse.passed
    assert any("alert_rate 0.0090 outside band" in r for r in worse.reasons)
    assert any("mase 0.9000 worse than tolerance 0.0500 of champion v2" in r for r in worse.reasons)


def test_gate_refuses_a_challenger_missing_a_required_metric():
    policy = GatePolicy((MetricRule("roc_auc", "higher", bound=0.5),))
    d = decide({"pr_auc": 0.4}, policy)
    assert not d.passed and "roc_auc was not measured" in d.reasons[0]


def test_gate_overrides_apply_per_family_then_per_model():
    from training.family import gate_policy, get_family

    settings = Settings(gates={"credit-risk": {"roc_auc": {"bound": 0.8}}, "my-credit": {"roc_auc": {"tolerance": 0.2}}})
    family = get_family("credit-risk")
    assert gate_policy(family, settings, "credit-risk").rule("roc_auc").bound == 0.8
    mine = gate_policy(family, settings, "my-credit").rule("roc_auc")
    assert (mine.bound, mine.tolerance) == (0.8, 0.2)
    with pytest.raises(Exception, match="unknown metrics"):
        gate_policy(family, Settings(gates={"credit-risk": {"rocauc": {"bound": 0.8}}}), "credit-risk")


def test_an_unknown_family_is_an_error_naming_the_known_ones():
    from training.family import get_family

    with pytest.raises(UnknownFamily, match="known families: .*credit-risk"):
        get_family("credit")


def test_a_version_without_a_family_tag_is_an_error_not_a_default():
    from ledgerline.families import family_from_tags

    with pytest.raises(UnknownFamily, match="carries no 'ledgerline.family' tag"):
        family_from_tags({"ledgerline.run_id": "x"}, "m v1")
    assert family_from_tags({"ledgerline.family": "credit-risk"}, "m v1") == "credit-risk"
