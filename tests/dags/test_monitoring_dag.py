"""``dag.test()`` of the monitoring DAG: a drifted prediction window triggers the retrain DAG with
reason ``drift``; inside the cooldown the next run triggers nothing."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from apps import orchestration as orch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)
WINDOW_ROWS = 1200


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in record.items():
        v = v.item() if isinstance(v, np.generic) else v
        out[k] = None if isinstance(v, float) and v != v else v
    return out


def log_drifted_window(settings: Any, model_name: str, version: str, *, end: datetime) -> int:
    """Fill the prediction log with a week of applicants whose incomes halved and utilisation rose."""
    import mlflow
    import sqlalchemy as sa

    from families.credit_risk.data import credit_spec, generate_loan_applications
    from ledgerline import db

    frame = generate_loan_applications(WINDOW_ROWS, seed=404, income_shift=0.5, utilization_shift=0.35)
    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    scores = model.predict_proba(frame[credit_spec().feature_names])[:, 1]
    rng = np.random.default_rng(0)
    start = end - timedelta(days=6)
    rows = [
        {
            "prediction_id": str(uuid.uuid4()),
            "model_name": model_name,
            "model_version": version,
            "created_at": start + timedelta(seconds=float(rng.uniform(0, 6 * 86400))),
            "inputs": _jsonable(rec),
            "outputs": {"probability_of_default": float(p)},
            "score": float(p),
            "latency_ms": 2.0,
        }
        for rec, p in zip(frame.drop(columns=["default"]).to_dict(orient="records"), scores, strict=True)
    ]
    with db.engine_for(settings.resolved_app_db_url()).begin() as conn:
        conn.execute(sa.insert(db.predictions), rows)
    return len(rows)


def _retrain_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result["dag_runs"] if r["dag_id"] == orch.retrain_dag_id("credit-risk")]


def test_drift_triggers_the_retrain_dag_with_reason_drift_once_per_cooldown(
    dag_runner: Any, train_credit: Callable[..., Any], fresh_app_db_url: str
) -> None:
    from monitoring.jobs import pending_retrain_decisions

    model_name = f"credit-dags-drift-{secrets.token_hex(3)}"
    trained = train_credit(model_name)
    assert trained.champion == trained.version
    settings = trained.settings.model_copy(update={"app_db_url": fresh_app_db_url})
    log_drifted_window(settings, model_name, trained.version, end=NOW - timedelta(minutes=30))
    # the family comes from the champion's registry tag: no "=credit-risk" needed
    env = {"LEDGERLINE_MONITORED_MODELS": model_name}

    first = dag_runner.run(orch.MONITORING_DAG_ID, settings, conf={}, logical_date=NOW, **env)

    assert first["state"] == "success", first["log"]
    states = dag_runner.states(first)
    assert states["monitor"] == ["success"] and states["trigger_retrain"] == ["success"], states
    triggered = [r for r in _retrain_runs(first) if r["conf"].get("model_name") == model_name]
    assert len(triggered) == 1, first["dag_runs"]
    run = triggered[0]
    assert run["conf"]["reason"] == "drift"
    assert run["run_type"].lower().endswith("operator_triggered")
    assert run["state"] == "queued"  # dag.test() runs only the monitoring DAG; a scheduler would pick it up
    assert run["run_id"] == orch.triggered_run_id("drift", model_name, run["conf"]["decision_id"])
    assert pending_retrain_decisions(settings, model_name) == [], "the decision records the run that acts on it"

    second = dag_runner.run(orch.MONITORING_DAG_ID, settings, conf={}, logical_date=NOW + timedelta(hours=6), **env)

    assert second["state"] == "success", second["log"]
    states = dag_runner.states(second)
    assert states["monitor"] == ["success"]
    assert states["trigger_retrain"] == ["skipped"], "nothing to trigger inside the cooldown"
    again = [r for r in _retrain_runs(second) if r["conf"].get("model_name") == model_name]
    assert [r["run_id"] for r in again] == [run["run_id"]]
