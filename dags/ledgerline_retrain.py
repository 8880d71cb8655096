"""Retraining, one DAG per model family (``ledgerline_retrain_<family>``), weekly and on demand.

ingest -> validate (Great Expectations; a failure stops the run, nothing is trained or
promoted) -> train (register, ``@challenger``) -> gate (challenger vs ``@champion``) ->
promote (move ``@champion`` on a pass; ledger row either way).

The run conf's ``reason`` (schedule | drift | performance | manual; default schedule)
goes to the MLflow run, the model version and the promotion ledger. The monitoring DAG
triggers these DAGs with ``reason`` = drift/performance and the ``model_name`` to retrain.
Task bodies only call ``ledgerline.app.orchestration``, which documents every setting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, dag, task

from ledgerline.app.orchestration import REASONS, dag_config, retrain_dag_id, timetable
from ledgerline.families import FAMILIES

CONFIG = dag_config()


def _params() -> dict[str, Param]:
    def optional(kind: str, description: str) -> Param:
        return Param(None, type=["null", kind], description=description)

    return {
        "reason": Param("schedule", enum=list(REASONS), description="why this run: recorded on the MLflow run and in the ledger"),
        "model_name": optional("string", "registered model to retrain (default: Variable/env LEDGERLINE_MODEL_NAME__<FAMILY>, else the family)"),
        "rows": optional("integer", "generator rows (default: LEDGERLINE_RETRAIN_ROWS, else 20000)"),
        "seed": optional("integer", "generator and split seed (default: settings.seed)"),
        "data_path": optional("string", "CSV/Parquet to train on instead of the generator (default: LEDGERLINE_DATA__<FAMILY>)"),
        "spec_path": optional("string", "dataset spec YAML for data_path (default: LEDGERLINE_SPEC__<FAMILY>)"),
        "target": optional("string", "label column of data_path when there is no spec"),
        "positive_label": optional("string", "positive class of target when there is no spec"),
        "decision_id": Param(None, type=["null", "string", "integer"], description="monitoring decision that asked for this run"),
    }


def build(family: str) -> DAG:
    @dag(
        dag_id=retrain_dag_id(family),
        description=f"Retrain, gate and promote the {family} model",
        schedule=timetable(CONFIG.retrain_schedule),  # the first run is the next slot, never a past one
        catchup=False,
        max_active_runs=1,  # one run at a time per family: runs never race for @champion
        default_args={**CONFIG.default_args(), "execution_timeout": timedelta(hours=2)},
        params=_params(),
        tags=["ledgerline", "retrain", family],
        doc_md=__doc__,
    )
    def retrain() -> None:
        @task
        def ingest() -> str:
            from ledgerline.app import orchestration as orch

            with orch.fail_fast():  # bad conf or data: fail now, retrying cannot help
                settings, job = orch.retrain_inputs(family)
                return orch.ingest(settings, job)

        @task
        def validate(snapshot_uri: str) -> str:
            from ledgerline.app import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.validate(settings, job, snapshot_uri)

        @task
        def train(snapshot_uri: str, mlflow_run_id: str) -> str:
            from ledgerline.app import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.train(settings, job, snapshot_uri, mlflow_run_id)

        @task
        def gate(version: str) -> dict[str, Any]:
            from ledgerline.app import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.gate(settings, job, version)

        @task
        def promote(version: str, mlflow_run_id: str, decision: dict[str, Any]) -> dict[str, Any]:
            from ledgerline.app import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.promote(settings, job, version, mlflow_run_id, decision)

        snapshot_uri = ingest()
        mlflow_run_id = validate(snapshot_uri)
        version = train(snapshot_uri, mlflow_run_id)
        promote(version, mlflow_run_id, gate(version))

    return retrain()


for _family in FAMILIES:
    globals()[retrain_dag_id(_family)] = build(_family)
