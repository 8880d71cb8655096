"""Drift and performance monitoring against Postgres, a real mlflow server and S3 (moto).

One credit champion is trained for the module; every test has an app database of its
own and fills the prediction log the way serving does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from apps.orchestration import retrain_plan
from families.credit_risk.data import generate_loan_applications
from ledgerline import db
from ledgerline.errors import LedgerlineError
from monitoring import store
from monitoring.jobs import mark_acted, pending_retrain_decisions, run_monitoring
from monitoring.settings import MonitoringSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
WINDOW_ROWS = 1500


def _mon(**overrides: object) -> MonitoringSettings:
    return MonitoringSettings(**overrides)  # type: ignore[arg-type]


def _last_week(now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(days=6, hours=12), now - timedelta(minutes=30)


def test_a_window_from_the_training_distribution_gives_no_drift(monitor_settings, prediction_log) -> None:
    start, end = _last_week(NOW)
    prediction_log.log(generate_loan_applications(WINDOW_ROWS, seed=101), start=start, end=end)

    decision = run_monitoring(monitor_settings, prediction_log.monitored.name, now=NOW, mon=_mon())

    drift = decision.evidence["drift"]
    assert drift["status"] == "ok", prediction_log.dump(drift)
    assert drift["drifted_features"] == []
    assert max(drift["psi"].values()) < 0.10 and drift["score_psi"] < 0.10
    assert drift["current_rows"] == WINDOW_ROWS and drift["reference_rows"] == 6000
    assert not decision.retrain and decision.reason is None and not decision.suppressed
    assert decision.evidence["performance"]["status"] == "insufficient_data"  # no labels yet
    assert pending_retrain_decisions(monitor_settings, prediction_log.monitored.name) == []


def test_a_shifted_income_and_utilisation_window_gives_drift_names_them_and_decides_retrain(
    monitor_settings, prediction_log
) -> None:
    name = prediction_log.monitored.name
    start, end = _last_week(NOW)
    shifted = generate_loan_applications(WINDOW_ROWS, seed=202, income_shift=1.6, utilization_shift=0.25)
    prediction_log.log(shifted, start=start, end=end)
    # an old window outside the 7 days must not count
    prediction_log.log(generate_loan_applications(300, seed=203), start=NOW - timedelta(days=20), end=NOW - timedelta(days=8))

    decision = run_monitoring(monitor_settings, name, now=NOW, mon=_mon())

    drift = decision.evidence["drift"]
    assert drift["status"] == "drift", prediction_log.dump(drift)
    assert set(drift["drifted_features"]) == {"annual_income", "revolving_utilization"}
    assert drift["psi_bands"]["annual_income"] == "significant"
    assert drift["psi_bands"]["debt_to_income"] == "stable"
    assert drift["current_rows"] == WINDOW_ROWS
    assert {"annual_income", "revolving_utilization"} <= set(drift["evidently"]["drifted_columns"])
    assert decision.retrain and decision.reason == "drift" and not decision.suppressed
    assert "annual_income" in decision.summary() and "RETRAIN" in decision.summary()

    # evidence a data scientist can open: the MLflow run with the HTML report and JSON summary
    c = MlflowClient(monitor_settings.tracking_uri)
    run = c.get_run(drift["mlflow_run_id"])
    assert run.data.tags["ledgerline.model_name"] == name
    assert run.data.tags["ledgerline.model_version"] == prediction_log.monitored.version
    assert run.data.tags["ledgerline.monitoring.decision_id"] == str(decision.decision_id)
    assert run.data.metrics["psi_annual_income"] > 0.25
    assert {a.path for a in c.list_artifacts(run.info.run_id, "drift")} >= {
        "drift/report.html",
        "drift/summary.json",
        "drift/evidently.json",
    }
    assert drift["reference"]["lineage"] == "dataset_input"
    assert drift["reference"]["uri"] == prediction_log.monitored.trained.snapshot_uri

    # a summary row per job, and the decision where the DAG finds it
    rows = store.results(monitor_settings.resolved_app_db_url(), name)
    assert [(r["job"], r["status"]) for r in rows] == [("drift", "drift"), ("performance", "insufficient_data")]
    assert rows[0]["mlflow_run_id"] == drift["mlflow_run_id"]
    assert [d.decision_id for d in pending_retrain_decisions(monitor_settings, name)] == [decision.decision_id]
    # the retrain DAG run it asks for reads the data as of the decision (a backfilled monitoring run's date, not today)
    (item,) = retrain_plan(monitor_settings, [{"model_name": name, "family": "credit-risk"}])
    assert item["logical_date"] == item["conf"]["interval_end"] == NOW.isoformat(), item
    assert item["conf"]["reason"] == "drift", item


def test_a_second_drift_within_the_cooldown_is_recorded_but_suppressed(monitor_settings, prediction_log) -> None:
    name = prediction_log.monitored.name
    start, end = _last_week(NOW)
    prediction_log.log(
        generate_loan_applications(WINDOW_ROWS, seed=303, income_shift=1.6, utilization_shift=0.25), start=start, end=end
    )
    mon = _mon(cooldown_days=3)

    first = run_monitoring(monitor_settings, name, now=NOW, mon=mon)
    second = run_monitoring(monitor_settings, name, now=NOW + timedelta(days=1), mon=mon)

    assert first.retrain and first.reason == "drift"
    assert second.reason == "drift" and second.suppressed and not second.retrain
    assert second.evidence["cooldown"]["last_retrain_decision_id"] == first.decision_id
    assert "suppressed" in second.summary()
    assert second.evidence["drift"]["reference"]["cached"]  # the conformed, scored reference is reused
    recorded = store.decisions(monitor_settings.resolved_app_db_url(), name)
    assert [(d.decision_id, d.retrain, d.suppressed) for d in recorded] == [
        (first.decision_id, True, False),
        (second.decision_id, False, True),
    ]
    assert [d.decision_id for d in pending_retrain_decisions(monitor_settings, name)] == [first.decision_id]

    # once the cooldown is over, drift decides a retrain again
    third = run_monitoring(monitor_settings, name, now=NOW + timedelta(days=3, hours=1), mon=mon)
    assert third.retrain and not third.suppressed
    assert [d.decision_id for d in pending_retrain_decisions(monitor_settings, name)] == [
        first.decision_id,
        third.decision_id,
    ]

    # the DAG acts on a decision exactly once
    mark_acted(monitor_settings, first.decision_id, "manual__2026-03-02")
    mark_acted(monitor_settings, first.decision_id, "manual__2026-03-02")  # idempotent
    mark_acted(monitor_settings, first.decision_id, "another-run")  # a second DAG run does not take it over
    with pytest.raises(LedgerlineError, match="not a retrain decision"):
        mark_acted(monitor_settings, second.decision_id, "manual__2026-03-03")
    assert [d.decision_id for d in pending_retrain_decisions(monitor_settings, name)] == [third.decision_id]
    with db.engine_for(monitor_settings.resolved_app_db_url()).connect() as conn:
        row = conn.execute(db.retrain_decisions.select().where(db.retrain_decisions.c.id == first.decision_id)).one()
    assert row.dag_run_id == "manual__2026-03-02" and row.acted_at is not None


def test_labels_that_contradict_the_model_yield_a_performance_decision(monitor_settings, prediction_log) -> None:
    name = prediction_log.monitored.name
    mon = _mon(label_window_days=30, window_days=7)
    closed_end = NOW - timedelta(days=30)
    closed = prediction_log.log(
        generate_loan_applications(800, seed=404), start=closed_end - timedelta(days=6), end=closed_end - timedelta(hours=1)
    )
    # recent predictions: their label window is still open, so even early labels must not count
    recent = prediction_log.log(generate_loan_applications(300, seed=405), start=NOW - timedelta(days=5), end=NOW)
    # contradicting labels: the riskiest half by the model's score repaid, the safest half defaulted
    for frame in (closed, recent):
        frame["label"] = (frame["score"] < np.median(frame["score"])).astype(int)
        frame["received_at"] = [min(ts + timedelta(days=10), NOW - timedelta(hours=1)) for ts in frame["created_at"]]
    prediction_log.feedback(pd.concat([closed, recent]))

    decision = run_monitoring(monitor_settings, name, now=NOW, mon=mon)

    perf = decision.evidence["performance"]
    assert perf["status"] == "degraded", prediction_log.dump(perf)
    assert perf["labelled"] == len(closed)  # only predictions whose label window has closed
    assert perf["metrics"]["roc_auc"] < 0.3 and perf["baseline"]["roc_auc"] > 0.7
    assert "roc_auc" in perf["degraded"]
    assert decision.retrain and decision.reason == "performance"
    assert decision.evidence["drift"]["status"] == "insufficient_data"  # 300 recent rows < 500
    run = MlflowClient(monitor_settings.tracking_uri).get_run(perf["mlflow_run_id"])
    assert run.data.metrics["live_roc_auc"] < 0.3 and run.data.tags["ledgerline.monitoring.job"] == "performance"


def test_too_little_current_data_gives_not_enough_data_not_a_verdict(monitor_settings, prediction_log) -> None:
    start, end = _last_week(NOW)
    prediction_log.log(
        generate_loan_applications(120, seed=505, income_shift=2.0, utilization_shift=0.4), start=start, end=end
    )

    decision = run_monitoring(monitor_settings, prediction_log.monitored.name, now=NOW, mon=_mon(min_current_rows=500))

    drift = decision.evidence["drift"]
    assert drift["status"] == "insufficient_data" and "not enough data" in drift["message"]
    assert drift["current_rows"] == 120 and "evidently" not in drift and drift["drifted_features"] == []
    assert not decision.retrain and decision.reason is None


def test_the_monitor_command_prints_the_decision_and_exits_0(monitor_settings, prediction_log, monkeypatch, capsys) -> None:
    from apps.cli import main

    start, end = _last_week(NOW)
    prediction_log.log(
        generate_loan_applications(600, seed=606, income_shift=1.6, utilization_shift=0.25), start=start, end=end
    )
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", monitor_settings.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", monitor_settings.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(monitor_settings.resolved_data_dir()))

    assert main(["monitor", prediction_log.monitored.name, "--now", NOW.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "RETRAIN (drift" in out and "report: http" in out

    assert main(["monitor", "credit-monitoring-no-such-model"]) == 2
    assert "has no @champion" in capsys.readouterr().err


def test_a_champion_without_a_family_tag_or_of_another_family_is_refused_before_any_job_runs(
    monitor_settings, monitored_model
) -> None:
    from ledgerline.errors import LedgerlineError
    from ledgerline.families import FAMILY_TAG
    from ledgerline.registry import client
    from monitoring import store

    name, version = monitored_model.name, monitored_model.version
    with pytest.raises(LedgerlineError, match="monitored as 'transaction-anomaly'"):
        run_monitoring(monitor_settings, name, now=NOW, mon=_mon(), expected_family="transaction-anomaly")

    c = client(monitor_settings)
    family = c.get_model_version(name, version).tags[FAMILY_TAG]
    c.delete_model_version_tag(name, version, FAMILY_TAG)
    try:
        with pytest.raises(LedgerlineError, match=f"{name} v{version} carries no 'ledgerline.family' tag"):
            run_monitoring(monitor_settings, name, now=NOW, mon=_mon())
    finally:
        c.set_model_version_tag(name, version, FAMILY_TAG, family)
    assert store.pending(monitor_settings.resolved_app_db_url(), name) == []


def test_enough_new_labels_since_the_champion_was_trained_decide_a_feedback_retrain_once_per_cooldown(
    monitor_settings, prediction_log
) -> None:
    import uuid

    from monitoring.data import resolve_champion

    name = prediction_log.monitored.name
    trained_at = resolve_champion(monitor_settings, name).created_at
    assert trained_at is not None
    now = trained_at + timedelta(days=2)

    def labels(n: int, start: datetime, end: datetime) -> pd.DataFrame:
        step = (end - start) / n
        return pd.DataFrame({"prediction_id": [str(uuid.uuid4()) for _ in range(n)],
                             "label": ["1" if i % 4 == 0 else "0" for i in range(n)],
                             "received_at": [start + step * i for i in range(n)]})

    # labels that arrived before the champion was trained do not count
    prediction_log.feedback(labels(300, trained_at - timedelta(days=5), trained_at - timedelta(minutes=1)))
    prediction_log.feedback(labels(119, trained_at + timedelta(minutes=1), now - timedelta(hours=1)))
    mon = _mon(retrain_after_labels=120, cooldown_days=3)

    below = run_monitoring(monitor_settings, name, now=now, mon=mon)
    assert below.reason is None and not below.retrain
    assert below.evidence["feedback"]["new_labels"] == 119

    prediction_log.feedback(labels(6, now - timedelta(minutes=50), now - timedelta(minutes=10)))
    first = run_monitoring(monitor_settings, name, now=now, mon=mon)
    assert first.retrain and first.reason == "feedback" and not first.suppressed
    assert first.evidence["feedback"] == {"new_labels": 125, "retrain_after_labels": 120,
                                          "champion_version": prediction_log.monitored.version,
                                          "since": trained_at.isoformat()}
    assert "feedback: 125 labels since" in first.summary() and ">= 120" in first.summary()

    # more labels a day later: the same reason, held back by the cooldown of the first decision
    prediction_log.feedback(labels(50, now, now + timedelta(hours=20)))
    second = run_monitoring(monitor_settings, name, now=now + timedelta(days=1), mon=mon)
    assert second.reason == "feedback" and second.suppressed and not second.retrain
    assert second.evidence["feedback"]["new_labels"] == 175
    assert second.evidence["cooldown"]["last_retrain_decision_id"] == first.decision_id
    assert [d.decision_id for d in pending_retrain_decisions(monitor_settings, name)] == [first.decision_id]

    # the monitoring DAG's plan passes the reason on to the retrain DAG
    from apps.orchestration import retrain_plan

    (item,) = retrain_plan(monitor_settings, [{"model_name": name, "family": "credit-risk"}])
    assert item["conf"] == {"reason": "feedback", "model_name": name, "decision_id": first.decision_id,
                            "interval_end": first.decided_at.isoformat()}  # the window ends when it was decided


def test_new_labels_are_counted_where_each_family_keeps_its_feedback(fresh_app_db_url) -> None:
    import sqlalchemy as sa

    from families.spending_forecast.tables import forecast_actuals
    from monitoring.family import get_monitoring_family

    since, until = NOW - timedelta(days=7), NOW
    feedback = [{"prediction_id": f"p{i}", "model_name": "m", "label": "1", "received_at": since + timedelta(hours=i)}
                for i in range(-3, 7 * 24 + 3)]  # three hours either side fall outside the window
    feedback.append({"prediction_id": "other", "model_name": "another-model", "label": "0", "received_at": NOW})
    actuals = [{"model_name": "m", "series_id": "s1", "ds": (since + timedelta(days=d)).date(), "y": 1.0,
                "received_at": since + timedelta(days=d)} for d in range(-2, 8)]
    with db.engine_for(fresh_app_db_url).begin() as conn:
        conn.execute(sa.insert(db.feedback), feedback)
        conn.execute(sa.insert(forecast_actuals), actuals)

    assert get_monitoring_family("credit-risk").new_labels(fresh_app_db_url, "m", since, until) == 7 * 24 + 1
    assert get_monitoring_family("spending-forecast").new_labels(fresh_app_db_url, "m", since, until) == 8
