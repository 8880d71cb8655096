"""``dag.test()`` of the credit retrain DAG against Postgres, a real mlflow server and S3 (moto).

One scheduled run trains ``credit-dags-retrain`` v1 for the module; the other tests build
on it: retried tasks of that run change nothing, a run on bad data stops at validate
without moving the champion, and a run on the same data again registers nothing and ends a
success (tests/integration/test_retrain_unchanged.py checks that path's task functions).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from apps import orchestration as orch
from ledgerline import db
from ledgerline.registry import CHAMPION, alias_version, client

pytestmark = pytest.mark.integration

DAG_ID = orch.retrain_dag_id("credit-risk")
ROWS = 4000
SCHEDULED = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
LATER = datetime(2026, 1, 12, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ScheduledRun:
    settings: Any
    model_name: str
    result: dict[str, Any]


@pytest.fixture(scope="module")
def scheduled_run(dag_runner: Any, session_settings: Any) -> ScheduledRun:
    model_name = f"credit-dags-retrain-{secrets.token_hex(3)}"
    result = dag_runner.run(DAG_ID, session_settings, conf={"model_name": model_name, "rows": ROWS}, logical_date=SCHEDULED)
    return ScheduledRun(session_settings, model_name, result)


def _versions(settings: Any, name: str) -> list[Any]:
    return list(client(settings).search_model_versions(f"name = '{name}'"))


def test_a_scheduled_run_registers_a_version_and_records_reason_schedule(scheduled_run: ScheduledRun, dag_runner: Any) -> None:
    result, settings, name = scheduled_run.result, scheduled_run.settings, scheduled_run.model_name
    assert result["state"] == "success", result["log"]
    assert dag_runner.states(result) == {t: ["success"] for t in ["gate", "ingest", "promote", "train", "validate"]}

    versions = _versions(settings, name)
    assert [v.version for v in versions] == ["1"]
    version = versions[0]
    assert version.tags["ledgerline.trigger"] == "schedule"
    assert version.tags["ledgerline.logical_date"] == "2026-01-05"  # the run's logical date keys the snapshot

    run = client(settings).get_run(version.run_id)
    assert run.data.tags["ledgerline.trigger"] == "schedule"
    assert run.data.tags[orch.RUN_TAG] == f"{DAG_ID}/{result['run_id']}"
    assert run.data.tags["ledgerline.validation"] == "passed"
    assert run.info.status == "FINISHED"

    rows = db.ledger(settings.resolved_app_db_url(), name)
    assert [(r["version"], r["trigger"], r["action"], r["run_id"]) for r in rows] == [
        ("1", "schedule", "promote", version.run_id)
    ]
    assert alias_version(client(settings), name, CHAMPION) == "1"


def test_retried_tasks_of_the_same_run_reuse_the_mlflow_run_the_version_and_the_ledger_row(
    scheduled_run: ScheduledRun,
) -> None:
    settings, name = scheduled_run.settings, scheduled_run.model_name
    job = orch.retrain_job(
        "credit-risk",
        {"model_name": name, "rows": ROWS},
        when=SCHEDULED,
        dag_run=f"{DAG_ID}/{scheduled_run.result['run_id']}",
        lookup=lambda _: None,
    )
    (version,) = _versions(settings, name)

    uri = orch.ingest(settings, job)  # the snapshot is immutable per date: same URI, nothing rewritten
    assert uri == client(settings).get_run(version.run_id).data.tags["ledgerline.snapshot_uri"]
    run_id = orch.validate(settings, job, uri)
    assert run_id == version.run_id
    assert orch.train(settings, job, uri, run_id) == "1"
    decision = orch.gate(settings, job, "1")
    outcome = orch.promote(settings, job, "1", run_id, decision)

    assert outcome == {"version": "1", "passed": True, "champion": "1", "trigger": "schedule"}
    assert [v.version for v in _versions(settings, name)] == ["1"]
    assert len(db.ledger(settings.resolved_app_db_url(), name)) == 1


def test_a_run_on_data_that_fails_validation_stops_at_validate_and_the_champion_stays(
    scheduled_run: ScheduledRun, dag_runner: Any, tmp_path: Path
) -> None:
    from families.credit_risk.data import credit_spec, generate_loan_applications

    settings, name = scheduled_run.settings, scheduled_run.model_name
    bad = generate_loan_applications(ROWS, seed=9)
    bad.loc[:299, "annual_income"] = -25_000.0  # injected fault: negative incomes
    data_path, spec_path = tmp_path / "bad.parquet", tmp_path / "spec.yaml"
    bad.to_parquet(data_path, index=False)
    spec_path.write_text(credit_spec(name).to_yaml())
    ledger_before = db.ledger(settings.resolved_app_db_url(), name)

    result = dag_runner.run(
        DAG_ID,
        settings,
        conf={"model_name": name, "data_path": str(data_path), "spec_path": str(spec_path), "reason": "drift"},
        logical_date=LATER,
    )

    assert result["state"] == "failed", result["log"]
    states = dag_runner.states(result)
    assert states["ingest"] == ["success"]
    assert states["validate"] == ["failed"]
    assert result["tasks"]["validate"][0]["try_number"] == 1, "failed validation is final, not retried"
    assert states["train"] == states["gate"] == states["promote"] == ["upstream_failed"]

    assert [v.version for v in _versions(settings, name)] == ["1"], "nothing registered"
    assert alias_version(client(settings), name, CHAMPION) == "1"
    assert db.ledger(settings.resolved_app_db_url(), name) == ledger_before
    c = client(settings)
    exp = c.get_experiment_by_name(settings.experiment_name(name))
    (failed,) = c.search_runs([exp.experiment_id], filter_string="tags.`ledgerline.validation` = 'failed'")
    assert failed.info.status == "FAILED"
    assert failed.data.tags["ledgerline.trigger"] == "drift"
    assert failed.data.tags[orch.RUN_TAG] == f"{DAG_ID}/{result['run_id']}"


def test_a_run_on_unchanged_data_skips_every_task_after_ingest_and_ends_a_success(
    scheduled_run: ScheduledRun, dag_runner: Any, tmp_path: Path
) -> None:
    import shutil

    settings, name = scheduled_run.settings, scheduled_run.model_name
    (version,) = _versions(settings, name)
    same = tmp_path / "same.parquet"  # the champion's training data, delivered again for another week
    shutil.copy(client(settings).get_run(version.run_id).data.tags["ledgerline.snapshot_uri"], same)
    before = db.ledger(settings.resolved_app_db_url(), name)

    result = dag_runner.run(DAG_ID, settings, conf={"model_name": name, "data_path": str(same), "target": "default",
                                                   "positive_label": "1"},
                            logical_date=datetime(2026, 1, 19, 3, 0, tzinfo=UTC))

    assert result["state"] == "success", result["log"]
    assert dag_runner.states(result) == {t: ["skipped"] for t in ["gate", "ingest", "promote", "train", "validate"]}
    assert [v.version for v in _versions(settings, name)] == ["1"]
    (row,) = db.ledger(settings.resolved_app_db_url(), name)[len(before):]
    assert row["action"] == "unchanged" and row["version"] == "1"
    assert row["reasons"][-1] == f"Airflow DAG run {DAG_ID}/{result['run_id']}"
