"""Monitoring pieces without services: PSI, bands, the decision rules, the label window, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from families.credit_risk.monitor import FAMILY as CREDIT
from features.labels import LabelCodec
from monitoring import psi
from monitoring.data import parse_dataset_source, snapshot_source
from monitoring.decision import Decision, choose_reason, in_cooldown
from monitoring.drift import compute_drift
from monitoring.performance import evaluate_performance, label_window, label_window_closed
from monitoring.settings import MonitoringSettings
from monitoring.store import jsonable

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


# --- PSI ------------------------------------------------------------------------------


def _binned_normal_psi(shift: float, bins: int = 10) -> float:
    """PSI of N(shift, 1) against N(0, 1) over the reference's decile bins, exactly."""
    edges = norm.ppf(np.linspace(0, 1, bins + 1)[1:-1])
    current = np.diff(np.concatenate([[0.0], norm.cdf(edges - shift), [1.0]]))
    return float(np.sum((current - 1 / bins) * np.log(current * bins)))


def test_psi_of_identical_samples_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=10_000)
    assert psi.psi_numeric(x, x) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shift", [0.1, 0.5, 1.0])
def test_psi_of_a_shifted_normal_matches_the_exact_binned_value(shift: float) -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 400_000), rng.normal(shift, 1, 400_000)
    assert psi.psi_numeric(ref, cur) == pytest.approx(_binned_normal_psi(shift), rel=0.05, abs=2e-3)


def test_psi_from_counts_matches_the_formula_and_floors_empty_bins() -> None:
    assert psi.psi_from_counts([50, 50], [80, 20]) == pytest.approx(0.3 * np.log(0.8 / 0.5) - 0.3 * np.log(0.2 / 0.5))
    assert np.isfinite(psi.psi_from_counts([100, 0], [50, 50]))  # an empty reference bin does not blow up
    assert np.isnan(psi.psi_from_counts([0, 0], [1, 1]))


def test_missing_values_are_a_bin_of_their_own() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=20_000)
    cur = rng.normal(size=20_000)
    cur[:6_000] = np.nan  # 30% missing, the rest unchanged
    assert psi.psi_numeric(ref, cur) > 0.25


def test_a_count_column_gets_one_bin_per_value() -> None:
    rng = np.random.default_rng(3)
    ref = rng.poisson(0.3, 50_000).astype(float)
    fitted = psi.NumericBins.fit(ref)
    assert fitted.discrete and fitted.n_bins == len(np.unique(ref)) + 1  # values + missing
    # moving mass from 0 to 1 is visible even though both fall in one decile
    cur = rng.poisson(0.6, 50_000).astype(float)
    assert psi.psi_numeric(ref, cur) > 0.10


def test_current_values_outside_the_reference_range_land_in_the_open_end_bins() -> None:
    ref = np.linspace(0, 1, 1000)
    counts = psi.NumericBins.fit(ref).counts(np.array([-5.0, 0.5, 7.0, np.nan]))
    assert counts[0] == 1 and counts[-2] == 1 and counts[-1] == 1 and counts.sum() == 4


def test_categorical_psi_counts_new_and_missing_categories() -> None:
    ref = pd.Series(["rent"] * 500 + ["own"] * 500)
    assert psi.psi_categorical(ref, ref.copy()) == pytest.approx(0.0)
    cur = pd.Series(["rent"] * 400 + ["own"] * 300 + ["other"] * 200 + [None] * 100)
    assert psi.psi_categorical(ref, cur) > 0.25


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, "stable"), (0.0999, "stable"), (0.10, "moderate"), (0.2499, "moderate"), (0.25, "significant"), (3.0, "significant"), (float("nan"), "stable")],
)
def test_bands_use_the_conventional_cutoffs(value: float, expected: str) -> None:
    assert psi.band(value) == expected


def test_bands_are_configurable() -> None:
    assert psi.band(0.07, moderate=0.05, significant=0.2) == "moderate"
    assert psi.at_least("significant", "moderate") and not psi.at_least("moderate", "significant")


# --- settings ------------------------------------------------------------------------------


def test_settings_read_the_monitoring_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERLINE_MONITORING_COOLDOWN_DAYS", "1.5")
    monkeypatch.setenv("LEDGERLINE_MONITORING_PSI_DRIFT_BAND", "moderate")
    mon = MonitoringSettings()
    assert mon.cooldown_days == 1.5 and mon.psi_drift_band == "moderate"
    assert mon.window_days == 7 and mon.resolved_performance_window_days == 7


def test_settings_refuse_bands_in_the_wrong_order() -> None:
    with pytest.raises(ValueError, match="psi_moderate"):
        MonitoringSettings(psi_moderate=0.3, psi_significant=0.2)


# --- drift without enough data -------------------------------------------------------


def test_too_few_current_rows_give_not_enough_data_instead_of_a_verdict() -> None:
    ref = pd.DataFrame({"x": np.arange(1000.0), "c": ["a"] * 1000})
    cur = pd.DataFrame({"x": np.arange(50.0) + 1e6, "c": ["z"] * 50})  # wildly different, but only 50 rows
    result = compute_drift(ref, cur, numeric=["x"], categorical=["c"], mon=MonitoringSettings(min_current_rows=100))
    assert result.status == "insufficient_data"
    assert "not enough data" in result.message and "50" in result.message
    assert result.drifted_features == [] and result.evidently is None
    assert result.summary()["status"] == "insufficient_data"


# --- performance and the label window --------------------------------------------------------


def test_the_label_window_ends_label_window_days_before_now() -> None:
    mon = MonitoringSettings(label_window_days=30, window_days=7)
    start, end = label_window(NOW, mon)
    assert end == NOW - timedelta(days=30) and start == end - timedelta(days=7)
    assert MonitoringSettings(label_window_days=30, performance_window_days=14).resolved_performance_window_days == 14


def test_a_prediction_counts_only_once_its_label_window_has_closed() -> None:
    mon = MonitoringSettings(label_window_days=30)
    assert label_window_closed(NOW - timedelta(days=30), NOW, mon)
    assert not label_window_closed(NOW - timedelta(days=29, hours=23), NOW, mon)


def _scored(n: int, seed: int, *, inverted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.6, n)
    y = (rng.random(n) < p).astype(int)
    return (1 - y if inverted else y), p


def test_labels_consistent_with_the_model_are_within_tolerance() -> None:
    y, p = _scored(5000, 4)
    from ledgerline.metrics import binary_metrics

    baseline = {k: binary_metrics(y, p)[k] for k in ("roc_auc", "pr_auc", "calibration_error")}
    result = evaluate_performance(y, p, baseline, MonitoringSettings(), family=CREDIT)
    assert result.status == "ok" and result.degraded == ()
    assert result.deltas["roc_auc"] == pytest.approx(0.0)


def test_contradicting_labels_degrade_roc_auc_beyond_tolerance() -> None:
    y, p = _scored(5000, 5, inverted=True)
    result = evaluate_performance(y, p, {"roc_auc": 0.80, "pr_auc": 0.40, "calibration_error": 0.02}, MonitoringSettings(), family=CREDIT)
    assert result.status == "degraded" and "roc_auc" in result.degraded and "calibration_error" in result.degraded
    assert result.metrics["roc_auc"] < 0.5


def test_a_disabled_tolerance_is_reported_but_not_judged() -> None:
    y, p = _scored(5000, 6, inverted=True)
    mon = MonitoringSettings(families={"credit-risk": {"roc_auc_tolerance": None, "pr_auc_tolerance": None, "calibration_tolerance": None}})
    result = evaluate_performance(y, p, {"roc_auc": 0.80}, mon, family=CREDIT)
    assert result.status == "ok" and result.deltas["roc_auc"] < -0.2


def test_too_few_labels_or_one_class_give_not_enough_data() -> None:
    y, p = _scored(100, 7)
    assert evaluate_performance(y, p, {}, MonitoringSettings(min_labelled_rows=200), family=CREDIT).status == "insufficient_data"
    ones = np.ones(500, dtype=int)
    result = evaluate_performance(ones, np.full(500, 0.3), {}, MonitoringSettings(), family=CREDIT)
    assert result.status == "insufficient_data" and "both outcomes" in result.message


@pytest.mark.parametrize(
    ("positive", "negatives", "sent", "expected"),
    [
        ("bad", ("good",), "bad", 1),
        ("bad", ("good",), "good", 0),
        ("bad", ("good",), 1, 1),  # canonical 1 is the positive class, not "not 'bad'"
        ("bad", ("good",), "0", 0),
        ("1", ("0",), 1, 1),
        ("1", ("0",), "0", 0),
        ("0", ("1",), "0", 1),  # the data's own 0/1 keep their meaning: no inversion
        ("0", ("1",), 1, 0),
        ("default", ("repaid",), " Default ", 1),
    ],
)
def test_what_feedback_stores_decodes_to_what_the_user_meant(
    positive: str, negatives: tuple[str, ...], sent: str | int, expected: int
) -> None:
    codec = LabelCodec("status", positive, negatives)
    assert codec.decode(codec.accept(sent)) == expected


# --- the decision ----------------------------------------------------------------------------


def test_performance_outranks_drift_which_outranks_schedule() -> None:
    assert choose_reason("drift", "degraded", champion_age_days=100, max_age_days=30) == "performance"
    assert choose_reason("drift", "ok", champion_age_days=100, max_age_days=30) == "drift"
    assert choose_reason("ok", "insufficient_data", champion_age_days=100, max_age_days=30) == "schedule"
    assert choose_reason("ok", "ok", champion_age_days=100, max_age_days=None) is None
    assert choose_reason("insufficient_data", "insufficient_data", champion_age_days=1, max_age_days=30) is None


def test_feedback_volume_ranks_below_drift_and_above_schedule() -> None:
    labels = {"new_labels": 250, "retrain_after_labels": 200}
    assert choose_reason("ok", "ok", champion_age_days=100, max_age_days=30, **labels) == "feedback"
    assert choose_reason("drift", "ok", champion_age_days=1, max_age_days=None, **labels) == "drift"
    assert choose_reason("ok", "degraded", champion_age_days=1, max_age_days=None, **labels) == "performance"
    assert choose_reason("ok", "ok", champion_age_days=1, max_age_days=None, new_labels=200, retrain_after_labels=200) == "feedback"
    assert choose_reason("ok", "ok", champion_age_days=1, max_age_days=None, new_labels=199, retrain_after_labels=200) is None
    assert choose_reason("ok", "ok", champion_age_days=100, max_age_days=30, new_labels=199,
                         retrain_after_labels=200) == "schedule"
    assert choose_reason("ok", "ok", champion_age_days=1, max_age_days=None, new_labels=10**6) is None  # off by default


def test_the_feedback_threshold_comes_from_the_environment_and_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MonitoringSettings().retrain_after_labels is None
    monkeypatch.setenv("LEDGERLINE_MONITORING_RETRAIN_AFTER_LABELS", "500")
    assert MonitoringSettings().retrain_after_labels == 500
    monkeypatch.setenv("LEDGERLINE_MONITORING_RETRAIN_AFTER_LABELS", "0")
    with pytest.raises(ValueError, match="retrain_after_labels"):
        MonitoringSettings()


def test_a_feedback_decision_says_how_many_labels_against_which_threshold() -> None:
    evidence = {"feedback": {"new_labels": 512, "retrain_after_labels": 500, "champion_version": "4"},
                "drift": {"status": "ok"}, "performance": {"status": "ok"}}
    line = Decision(9, "credit-risk", "4", True, "feedback", False, evidence, NOW).summary()
    assert line == "credit-risk v4: RETRAIN (feedback: 512 labels since v4 was trained >= 500) [decision #9]"


def test_the_cooldown_holds_back_retrains_for_its_length_only() -> None:
    last = NOW - timedelta(days=1)
    assert in_cooldown(last, NOW, 3)
    assert not in_cooldown(NOW - timedelta(days=3), NOW, 3)
    assert not in_cooldown(None, NOW, 3)
    assert not in_cooldown(last, NOW, 0)  # 0 turns it off


def test_a_decision_summary_is_one_line() -> None:
    evidence = {
        "drift": {"status": "drift", "drifted_features": ["annual_income"], "psi": {"annual_income": 0.61}},
        "performance": {"status": "insufficient_data"},
        "cooldown": {"last_retrain_decision_id": 3, "last_retrain_at": "2026-03-01T06:00:00+00:00", "cooldown_days": 3},
    }
    suppressed = Decision(7, "credit-risk", "2", False, "drift", True, evidence, NOW)
    retrain = Decision(8, "credit-risk", "2", True, "drift", False, evidence, NOW)
    nothing = Decision(9, "credit-risk", "2", False, None, False, {"drift": {"status": "ok"}}, NOW)
    for d in (suppressed, retrain, nothing):
        assert "\n" not in d.summary() and f"#{d.decision_id}" in d.summary()
    assert "suppressed by cooldown" in suppressed.summary() and "#3" in suppressed.summary()
    assert "RETRAIN (drift: annual_income PSI 0.61)" in retrain.summary()
    assert "no retrain (drift: ok" in nothing.summary()


def test_evidence_is_made_json_safe() -> None:
    clean = jsonable({"psi": np.float64(0.3), "nan": float("nan"), "when": NOW, "n": np.int64(3), "t": (1, 2)})
    assert clean == {"psi": 0.3, "nan": None, "when": NOW.isoformat(), "n": 3, "t": [1, 2]}
    json.dumps(clean, allow_nan=False)


# --- the reference lineage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{"uri": "/data/snapshots/x/2026-01-05/data.parquet"}', "/data/snapshots/x/2026-01-05/data.parquet"),
        ('{"path": "file:///data/x.parquet"}', "/data/x.parquet"),
        ("/data/plain.parquet", "/data/plain.parquet"),
        ('"/data/quoted.parquet"', "/data/quoted.parquet"),
        ('{"uri": ""}', None),
        ("", None),
        (None, None),
    ],
)
def test_the_snapshot_path_is_parsed_from_any_dataset_source(source: str | None, expected: str | None) -> None:
    assert parse_dataset_source(source) == expected


def test_the_training_dataset_input_wins_over_other_inputs() -> None:
    def di(source: str, context: str) -> SimpleNamespace:
        tag = SimpleNamespace(key="mlflow.data.context", value=context)
        return SimpleNamespace(dataset=SimpleNamespace(source=source), tags=[tag])

    run = SimpleNamespace(inputs=SimpleNamespace(dataset_inputs=[di('{"uri": "/eval.parquet"}', "evaluation"),
                                                                  di('{"uri": "/train.parquet"}', "training")]))
    assert snapshot_source(run) == "/train.parquet"
    assert snapshot_source(SimpleNamespace(inputs=SimpleNamespace(dataset_inputs=[]))) is None


# --- the demo's SQLite app database ----------------------------------------------------------


def test_the_window_and_the_decision_rows_work_on_sqlite(tmp_path) -> None:
    import sqlalchemy as sa

    from ledgerline import db
    from monitoring import store
    from monitoring.data import SCORE_COLUMN, load_labelled_window, load_prediction_window

    url = f"sqlite:///{tmp_path / 'app.db'}"
    rows = [
        {"prediction_id": f"p{i}", "model_name": "m", "model_version": "2" if i < 8 else "1",
         "created_at": NOW - timedelta(days=i), "inputs": {"x": i * 1.5, "c": "a" if i % 2 else None, "extra": 1},
         "outputs": {}, "score": 0.1 * i}
        for i in range(10)
    ]
    rows[3]["inputs"]["x"] = "n/a"  # junk in a numeric input
    with db.engine_for(url).begin() as conn:
        conn.execute(sa.insert(db.predictions), rows)
        conn.execute(sa.insert(db.feedback), [{"prediction_id": "p1", "model_name": "m", "label": "1", "received_at": NOW}])

    window = load_prediction_window(url, "m", "2", NOW - timedelta(days=7), NOW, numeric=["x"], categorical=["c"])
    assert len(window) == 7  # days 1..7 of version 2 ([start, end) excludes day 0 at NOW)
    assert window["x"].dtype == "float64" and window["x"].isna().sum() == 1 and window.attrs["junk"] == {"x": 1}
    assert set(window["c"].dropna()) == {"a"} and window[SCORE_COLUMN].notna().all()
    labelled = load_labelled_window(url, "m", "2", NOW - timedelta(days=7), NOW, labels_until=NOW, codec=LabelCodec.canonical_only())
    assert labelled.labelled == 1 and labelled.predictions == 7 and labelled.y.tolist() == [1]

    with store.decision_lock(url, "m") as conn:
        d = store.insert_decision(conn, model_name="m", model_version="2", retrain=True, reason="drift",
                                  suppressed=False, evidence={"psi": float("nan")}, decided_at=NOW)
        assert store.last_retrain(conn, "m", NOW + timedelta(hours=1)) == (d.decision_id, NOW)
    assert [p.decision_id for p in store.pending(url, "m")] == [d.decision_id]
    assert store.pending(url, "m")[0].decided_at == NOW and store.pending(url, "m")[0].evidence == {"psi": None}
    assert store.mark_acted(url, d.decision_id, "run-1") and store.mark_acted(url, d.decision_id, "run-1")
    assert not store.mark_acted(url, d.decision_id, "run-2") and store.pending(url, "m") == []


def test_labels_the_feedback_api_stored_in_the_users_terms_are_decoded_by_the_same_codec(tmp_path) -> None:
    import sqlalchemy as sa

    from ledgerline import db
    from monitoring.data import load_labelled_window
    from serving.store import record_feedback

    url = f"sqlite:///{tmp_path / 'app.db'}"
    codec = LabelCodec("Status", "bad", ("good",))
    sent = ["bad", "good", "good", 1, 0, "bad"]
    rows = [
        {"prediction_id": f"p{i}", "model_name": "m", "model_version": "1", "created_at": NOW - timedelta(days=2),
         "inputs": {}, "outputs": {}, "score": 0.1 * i}
        for i in range(len(sent) + 1)
    ]
    engine = db.engine_for(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(db.predictions), rows)
    for i, label in enumerate(sent):
        record_feedback(engine, f"p{i}", codec.accept(label), now=NOW - timedelta(days=1))
    with engine.begin() as conn:  # written by hand, outside the API: not canonical
        conn.execute(sa.insert(db.feedback), [{"prediction_id": f"p{len(sent)}", "model_name": "m", "label": "bad",
                                               "received_at": NOW - timedelta(days=1)}])

    labelled = load_labelled_window(url, "m", "1", NOW - timedelta(days=7), NOW, labels_until=NOW, codec=codec)
    assert sorted(zip(labelled.p.round(1).tolist(), labelled.y.tolist(), strict=True)) == [
        (0.0, 1), (0.1, 0), (0.2, 0), (0.3, 1), (0.4, 0), (0.5, 1)
    ]
    assert labelled.undecodable == 1 and labelled.labelled == 6


# --- families ----------------------------------------------------------------------------


def test_every_registered_family_has_a_monitoring_plug_in() -> None:
    from ledgerline.families import FAMILIES
    from monitoring.family import get_monitoring_family

    assert {name: get_monitoring_family(name).name for name in FAMILIES} == {name: name for name in FAMILIES}


def test_a_champion_without_a_family_tag_is_an_error_not_a_credit_risk_default() -> None:
    from families.transaction_anomaly.data import transaction_spec
    from ledgerline.families import UnknownFamily
    from monitoring.data import Champion

    champion = Champion("m", "3", "run", "/nowhere.parquet", transaction_spec("m"), None)
    with pytest.raises(UnknownFamily, match="m v3 carries no 'ledgerline.family' tag"):
        _ = champion.monitoring


def _alerts(verdicts: list[tuple[bool, int]]) -> tuple[np.ndarray, np.ndarray, list[dict[str, object]]]:
    """(y, scores, outputs) of labelled anomaly predictions given (alerted, fraud) pairs."""
    y = np.array([fraud for _, fraud in verdicts], dtype=int)
    scores = np.array([0.8 if alerted else 0.4 for alerted, _ in verdicts])
    return y, scores, [{"is_anomaly": alerted, "anomaly_score": s} for (alerted, _), s in zip(verdicts, scores, strict=True)]


def test_verdicts_contradicting_the_alerts_degrade_alert_precision_against_the_offline_precision() -> None:
    from families.transaction_anomaly.monitor import FAMILY as ANOMALY

    y, scores, outputs = _alerts([(True, 0)] * 45 + [(True, 1)] * 5)
    mon = MonitoringSettings(min_labelled_rows=10)
    result = evaluate_performance(y, scores, {"precision_at_budget": 0.6}, mon, family=ANOMALY, outputs=outputs)
    assert result.status == "degraded" and result.degraded == ("precision_at_budget",)
    assert result.metrics["precision_at_budget"] == pytest.approx(0.1)
    assert "recall_at_budget" not in result.metrics  # verdicts on alerts alone cannot estimate recall

    y, scores, outputs = _alerts([(True, 1)] * 30 + [(True, 0)] * 20 + [(False, 0)] * 40 + [(False, 1)] * 10)
    result = evaluate_performance(y, scores, {"precision_at_budget": 0.6, "recall_at_budget": 0.7}, mon,
                                  family=ANOMALY, outputs=outputs)
    assert result.status == "ok", result.message
    assert result.metrics["recall_at_budget"] == pytest.approx(0.75) and result.deltas["precision_at_budget"] == pytest.approx(0.0)


def test_verdicts_on_no_alert_at_all_give_not_enough_data() -> None:
    from families.transaction_anomaly.monitor import FAMILY as ANOMALY

    y, scores, outputs = _alerts([(False, 0)] * 50)
    result = evaluate_performance(y, scores, {"precision_at_budget": 0.6}, MonitoringSettings(min_labelled_rows=10),
                                  family=ANOMALY, outputs=outputs)
    assert result.status == "insufficient_data" and "raised an alert" in result.message


def test_an_anomaly_tolerance_can_be_set_per_metric_from_the_environment(monkeypatch) -> None:
    from families.transaction_anomaly.monitor import FAMILY as ANOMALY

    monkeypatch.setenv("LEDGERLINE_MONITORING_TOLERANCES", '{"precision_at_budget": 0.9}')
    rules = {r.metric: r for r in ANOMALY.performance_rules(MonitoringSettings())}
    assert rules["precision_at_budget"].tolerance == 0.9 and rules["recall_at_budget"].tolerance == 0.10
    credit = {r.metric: r.tolerance for r in CREDIT.performance_rules(MonitoringSettings(families={"credit-risk": {"roc_auc_tolerance": 0.01}}))}
    assert credit == {"roc_auc": 0.01, "pr_auc": 0.10, "calibration_error": 0.05}


@pytest.mark.parametrize(
    ("alerts", "n", "status"),
    [
        (10, 2000, "ok"),  # 0.5 % on a 0.5 % budget
        (14, 2000, "ok"),  # 1.4x the budget, and noise
        (60, 2000, "degraded"),  # 6x the budget
        (0, 2000, "ok"),  # no alert in 2,000 may still be chance at 10 expected (99 %)
        (0, 5000, "degraded"),  # alerts stopped
        (0, 300, "insufficient_data"),  # too few predictions to say
    ],
)
def test_the_windows_alert_rate_is_checked_against_its_band_around_the_budget_with_sampling_noise(
    alerts: int, n: int, status: str
) -> None:
    from families.transaction_anomaly.monitor import FAMILY as ANOMALY
    from monitoring.performance import evaluate_window

    outputs = [{"is_anomaly": i < alerts} for i in range(n)]
    check = evaluate_window(np.zeros(n), outputs, {"alert_budget": 0.005}, MonitoringSettings(), family=ANOMALY)
    assert check is not None and check.status == status, check.message
    if status == "degraded":
        assert set(check.breached) <= {"alert_rate_ratio_low", "alert_rate_ratio_high"} and check.breached


def test_an_alert_rate_without_the_champions_budget_is_not_judged_and_credit_has_no_window_check() -> None:
    from families.transaction_anomaly.monitor import FAMILY as ANOMALY
    from monitoring.performance import PerformanceResult, evaluate_window, with_window

    outputs = [{"is_anomaly": i < 100} for i in range(1000)]
    check = evaluate_window(np.zeros(1000), outputs, {}, MonitoringSettings(), family=ANOMALY)
    assert check is not None and check.status == "insufficient_data" and "alert_rate_ratio_low" in check.message
    assert evaluate_window(np.zeros(1000), outputs, {}, MonitoringSettings(), family=CREDIT) is None

    breached = evaluate_window(np.zeros(1000), outputs, {"alert_budget": 0.005}, MonitoringSettings(), family=ANOMALY)
    folded = with_window(PerformanceResult("insufficient_data", "not enough data: no verdicts", 1000, 0), breached)
    assert folded.status == "degraded" and folded.message.startswith("window check failed")
    assert folded.summary()["window_check"]["metrics"]["alert_rate"] == pytest.approx(0.1)


def test_anomaly_drift_watches_raw_fields_but_not_datetimes_or_identifiers() -> None:
    from families.transaction_anomaly.data import transaction_spec
    from families.transaction_anomaly.monitor import FAMILY as ANOMALY

    numeric, categorical = ANOMALY.monitored_columns(transaction_spec("m"))
    assert numeric == ["amount"]
    assert categorical == ["currency", "merchant_category", "channel", "country"]


def test_an_analyst_verdict_is_accepted_as_fraud_or_legitimate_and_stored_canonically() -> None:
    from families.transaction_anomaly.data import transaction_spec
    from features.labels import LabelError
    from serving.family import get_serving_family

    codec = get_serving_family("transaction-anomaly").label_codec(transaction_spec("m"))
    assert [codec.accept(v) for v in ("fraud", "Legitimate", "1", 0)] == ["1", "0", "1", "0"]
    assert [codec.decode(codec.accept(v)) for v in ("fraud", "legitimate")] == [1, 0]
    with pytest.raises(LabelError, match="'fraud' \\(positive\\), 'legitimate' \\(negative\\)"):
        codec.accept("suspicious")
    credit = get_serving_family("credit-risk").label_codec(None)
    with pytest.raises(LabelError):
        credit.accept("fraud")


def test_an_alias_never_overrides_a_datasets_own_label() -> None:
    codec = LabelCodec("verdict", "fraud", ("ok",)).with_aliases(positive=("x",), negative=("fraud",))
    assert codec.accept("fraud") == "1" and codec.accept("x") == "1" and codec.accept("ok") == "0"


def test_only_the_answer_fields_a_family_reads_are_loaded_from_the_prediction_log(tmp_path) -> None:
    import sqlalchemy as sa

    from ledgerline import db
    from monitoring.data import load_labelled_window, load_window_outputs

    url = f"sqlite:///{tmp_path / 'app.db'}"
    rows = [
        {"prediction_id": f"p{i}", "model_name": "m", "model_version": "1", "created_at": NOW - timedelta(hours=i + 1),
         "inputs": {}, "outputs": {"is_anomaly": i % 4 == 0, "anomaly_score": 0.1 * i, "reasons": [{"text": "x"}]},
         "score": 0.1 * i}
        for i in range(8)
    ]
    with db.engine_for(url).begin() as conn:
        conn.execute(sa.insert(db.predictions), rows)
        conn.execute(sa.insert(db.feedback), [{"prediction_id": "p4", "model_name": "m", "label": "0", "received_at": NOW}])

    scores, outputs = load_window_outputs(url, "m", "1", NOW - timedelta(days=1), NOW, ("is_anomaly",))
    assert len(scores) == 8 and sorted(o["is_anomaly"] for o in outputs) == [False] * 6 + [True] * 2
    assert all(set(o) == {"is_anomaly"} for o in outputs)
    labelled = load_labelled_window(url, "m", "1", NOW - timedelta(days=1), NOW, labels_until=NOW,
                                    codec=LabelCodec.canonical_only(), output_fields=("is_anomaly",))
    assert labelled.outputs == [{"is_anomaly": True}] and labelled.y.tolist() == [0]


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerances must be 0 or more"):
        MonitoringSettings(tolerances={"precision_at_budget": -0.1})


def test_every_family_implements_the_whole_monitoring_protocol_through_the_base_class() -> None:
    from ledgerline.families import FAMILIES
    from monitoring.family import MonitoringFamily, MonitoringFamilyBase, get_monitoring_family

    for name in FAMILIES:
        family = get_monitoring_family(name)
        assert isinstance(family, MonitoringFamily) and isinstance(family, MonitoringFamilyBase), name
        assert family.name == name
        # a family whose feedback is per series runs its own performance job (and no drift job)
        assert family.series_feedback == (type(family).performance_job is not MonitoringFamilyBase.performance_job), name


def test_numeric_labels_reach_the_family_as_the_codec_decoded_them() -> None:
    from monitoring.family import MonitoringFamilyBase

    seen: list[np.ndarray] = []

    class Realised(MonitoringFamilyBase[object]):
        name = "realised-values"

        def monitored_columns(self, spec: object) -> tuple[list[str], list[str]]:
            return [], []

        def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: object) -> np.ndarray:
            return np.zeros(len(frame))

        def performance_rules(self, mon: MonitoringSettings) -> tuple:
            from ledgerline.families import MetricRule

            return (MetricRule("mdape", "lower", tolerance=0.05),)

        def live_metrics(self, y: np.ndarray, scores: np.ndarray, outputs: object) -> dict[str, float]:
            seen.append(y)
            return {"mdape": float(np.median(np.abs(scores - y) / y))}

    y = np.linspace(100_000.5, 300_000.5, 300)  # realised prices: a cast to int would change them
    result = evaluate_performance(y, y * 1.02, {"mdape": 0.03}, MonitoringSettings(), family=Realised())  # type: ignore[arg-type]
    assert seen[0].dtype == np.float64 and seen[0][0] == 100_000.5
    assert result.status == "ok" and result.metrics["mdape"] == pytest.approx(0.02)


def test_new_labels_count_from_the_end_of_the_champions_training_window():
    """A champion trained on a dated window (a backfill, or a run registered days after its window ended)
    has not seen labels received after the window's end; one trained on a file counts from its registration."""
    from datetime import UTC, datetime

    from features.spec import DatasetSpec
    from monitoring.data import Champion, _window_end

    registered = datetime(2026, 12, 3, 12, tzinfo=UTC)
    spec = DatasetSpec.from_dict({"name": "x", "columns": {"a": {"type": "numeric"}}})
    on_file = Champion("m", "1", "r", "s3://x", spec, registered)
    assert on_file.labels_new_since == registered
    window_end = _window_end("2026-10-12T00:00:00+00:00")
    on_window = Champion("m", "2", "r", "s3://x", spec, registered, data_until=window_end)
    assert on_window.labels_new_since == datetime(2026, 10, 12, tzinfo=UTC)
    assert _window_end("2026-10-12T00:00:00") == datetime(2026, 10, 12, tzinfo=UTC)  # naive: UTC
    assert _window_end("not a date") is None and _window_end(None) is None
