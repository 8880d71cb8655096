"""The retrain DAG's check for a run that would register nothing, through its task functions (no Airflow):
Postgres, a real mlflow server and S3 (moto). ``tests/dags/test_retrain_dag.py`` runs it once in Airflow."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from apps import orchestration as orch
from ledgerline import db
from ledgerline.errors import AlreadyTrained, NothingNew
from ledgerline.registry import client

pytestmark = pytest.mark.integration

DAG_ID = orch.retrain_dag_id("credit-risk")
WHEN = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
ROWS = 3000


def _job(name: str, run: str, **params: Any) -> orch.RetrainJob:
    return orch.retrain_job("credit-risk", {"model_name": name, "rows": ROWS, **params}, when=WHEN,
                            dag_run=f"{DAG_ID}/{run}", lookup=lambda _: None)


def _run_dag_tasks(settings: Any, job: orch.RetrainJob) -> str:
    uri = orch.ingest(settings, job)
    run_id = orch.validate(settings, job, uri)
    version = orch.train(settings, job, uri, run_id)
    orch.promote(settings, job, version, run_id, orch.gate(settings, job, version))
    return version


def _versions(settings: Any, name: str) -> list[str]:
    return sorted(v.version for v in client(settings).search_model_versions(f"name = '{name}'"))


def test_a_second_run_on_the_same_inputs_records_unchanged_once_and_a_forced_one_trains(
    session_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, name = session_settings, f"credit-unchanged-{secrets.token_hex(3)}"
    url = settings.resolved_app_db_url()
    # a version trained by the DAG before it recorded the label values with the spec: still the same spec
    monkeypatch.setattr("training.inputs.with_observed_labels", lambda spec, frame: spec)
    assert _run_dag_tasks(settings, _job(name, "scheduled__first")) == "1"
    monkeypatch.undo()
    logged = client(settings).download_artifacts(client(settings).get_model_version(name, "1").run_id, "data/spec.yaml")
    assert "negative_labels" not in open(logged).read()

    # the run that registered v1, its ingest retried: it goes on (its later tasks find their work done)
    assert orch.ingest(settings, _job(name, "scheduled__first")).endswith("data.parquet")

    second = _job(name, "scheduled__second", reason="drift")
    for _ in range(2):  # the second call is a retried task: it finds the row instead of writing another
        with pytest.raises(AlreadyTrained, match=r"equal those of v1 \(@champion and the latest registered version\)"):
            orch.ingest(settings, second)
    rows = db.ledger(url, name)
    assert [(r["action"], r["version"], r["trigger"], r["passed"]) for r in rows] == [
        ("promote", "1", "schedule", True), ("unchanged", "1", "drift", True)]
    assert rows[1]["previous_champion"] == rows[1]["champion_after"] == "1"
    assert rows[1]["reasons"][-1] == f"Airflow DAG run {DAG_ID}/scheduled__second"
    assert rows[1]["run_id"] == client(settings).get_model_version(name, "1").run_id

    forced = _job(name, "manual__forced", force=True)
    assert _run_dag_tasks(settings, forced) == "2"  # force: trained and registered although unchanged
    assert _versions(settings, name) == ["1", "2"]
    assert len(db.ledger(url, name)) == 3


def test_an_empty_window_in_a_dag_run_records_nothing_new_once(session_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, name = session_settings, f"credit-nothing-new-{secrets.token_hex(3)}"

    def empty(*args: Any, **kwargs: Any) -> Any:
        raise NothingNew("source files 's3://bank/loans/{ds}.parquet' has no file in [2026-01-05, 2026-01-12)")

    monkeypatch.setattr("training.pipeline.prepare", empty)  # what a source's read gives for an empty window
    job = _job(name, "scheduled__empty")
    for _ in range(2):
        with pytest.raises(NothingNew, match="has no file"):
            orch.ingest(settings, job)
    (row,) = db.ledger(settings.resolved_app_db_url(), name)
    assert (row["action"], row["version"], row["champion_after"], row["trigger"]) == ("nothing-new", "", None, "schedule")
    assert row["reasons"] == ["source files 's3://bank/loans/{ds}.parquet' has no file in [2026-01-05, 2026-01-12)",
                              f"Airflow DAG run {DAG_ID}/scheduled__empty"]
    assert _versions(settings, name) == []
