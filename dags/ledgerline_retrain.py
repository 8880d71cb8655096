"""Retraining, one DAG per model family (``ledgerline_retrain_<family>``), weekly and on demand.

ingest -> validate (Great Expectations; a failure stops the run, nothing is trained or
promoted) -> train (register, ``@challenger``) -> gate (challenger vs ``@champion``) ->
promote (move ``@champion`` on a pass; ledger row either way).

No version without change: when the snapshot, spec and parameters equal those of the latest
registered version or the champion (the check ``ledgerline train`` runs too), or the run's
window is empty, ``ingest`` writes one ledger row (``unchanged`` / ``nothing-new``) and is
skipped, and so is every task after it; the run ends a success. Run conf ``force``: train anyway.

A family that trains in chunks of series (``ledgerline.families.CHUNKED_TRAINING``) has
``plan_chunks -> train_chunk`` (one mapped task per chunk, at most ``max_chunks``, spread over
the Celery workers) ``-> gather`` (one registered version) in place of ``train``.

The run conf's ``reason`` (schedule | drift | performance | feedback | manual; default schedule)
goes to the MLflow run, the model version and the promotion ledger. The monitoring DAG
triggers these DAGs with ``reason`` = drift/performance/feedback and the ``model_name`` to retrain.
Task bodies only call ``apps.orchestration``, which documents every setting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, dag, task

from apps.orchestration import REASONS, dag_config, option_params, retrain_dag_id, timetable, trains_in_chunks
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
        "force": Param(False, type=["null", "boolean"],
                       description="train and register even when data, spec and params equal a registered version's"),
        "hyper_params": Param(None, type=["null", "object"],
                              description="hyper-parameter overrides, name -> value (ledgerline train --param KEY=VALUE)"),
        "source": Param(None, type=["null", "object"],
                        description="data sources and window policy (the YAML of ledgerline train --source as an object: "
                        "window, base, sources) instead of data_path"),
        "source_path": optional("string", "a source config YAML file (default: LEDGERLINE_SOURCE__<FAMILY>)"),
        "interval_end": optional("string", "end of the data window, ISO datetime (default: the run's data_interval_end, "
                                 "else its run_after)"),
    }


def _option_params(family: str) -> dict[str, Param]:
    """The family's own train options (the same as ``ledgerline train``'s: text, series, time, segment columns)."""
    return {name: Param(None, type=["null", kind], description=text) for name, kind, text in option_params(family)}


def _chunk_params() -> dict[str, Param]:
    return {
        "max_chunks": Param(None, type=["null", "integer"], minimum=1,
                            description="chunks of series the training is mapped over (default: LEDGERLINE_MAX_CHUNKS, else 16)"),
    }


def build(family: str) -> DAG:
    @dag(
        dag_id=retrain_dag_id(family),
        description=f"Retrain, gate and promote the {family} model",
        schedule=timetable(CONFIG.retrain_schedule),  # the first run is the next slot, never a past one
        catchup=False,
        max_active_runs=1,  # one run at a time per family: runs never race for @champion
        default_args={**CONFIG.default_args(), "execution_timeout": timedelta(hours=2)},
        params={**_params(), **_option_params(family), **(_chunk_params() if trains_in_chunks(family) else {})},
        tags=["ledgerline", "retrain", family],
        doc_md=__doc__,
    )
    def retrain() -> None:
        @task
        def ingest() -> str:
            from apps import orchestration as orch

            with orch.fail_fast():  # bad conf or data: fail now, retrying cannot help
                settings, job = orch.retrain_inputs(family)
                return orch.ingest(settings, job)

        @task
        def validate(snapshot_uri: str) -> str:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.validate(settings, job, snapshot_uri)

        @task
        def train(snapshot_uri: str, mlflow_run_id: str) -> str:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.train(settings, job, snapshot_uri, mlflow_run_id)

        @task
        def gate(version: str) -> dict[str, Any]:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.gate(settings, job, version)

        @task
        def promote(version: str, mlflow_run_id: str, decision: dict[str, Any]) -> dict[str, Any]:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.promote(settings, job, version, mlflow_run_id, decision)

        @task
        def plan_chunks(snapshot_uri: str, mlflow_run_id: str) -> list[int]:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.plan_chunks(settings, job, snapshot_uri, mlflow_run_id)

        @task(map_index_template="chunk {{ task.op_kwargs['index'] }}")
        def train_chunk(snapshot_uri: str, mlflow_run_id: str, index: int) -> dict[str, Any]:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.train_chunk(settings, job, snapshot_uri, mlflow_run_id, index, attempt=orch.current_try())

        @task
        def gather(snapshot_uri: str, mlflow_run_id: str, chunks: list[dict[str, Any]]) -> str:
            from apps import orchestration as orch

            with orch.fail_fast():
                settings, job = orch.retrain_inputs(family)
                return orch.gather(settings, job, snapshot_uri, mlflow_run_id)

        snapshot_uri = ingest()
        mlflow_run_id = validate(snapshot_uri)
        if trains_in_chunks(family):
            indices = plan_chunks(snapshot_uri, mlflow_run_id)
            parts = train_chunk.partial(snapshot_uri=snapshot_uri, mlflow_run_id=mlflow_run_id).expand(index=indices)
            version = gather(snapshot_uri, mlflow_run_id, parts)
        else:
            version = train(snapshot_uri, mlflow_run_id)
        promote(version, mlflow_run_id, gate(version))

    return retrain()


for _family in FAMILIES:
    globals()[retrain_dag_id(_family)] = build(_family)
