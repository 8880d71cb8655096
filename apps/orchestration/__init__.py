"""What the Airflow DAGs call: one function per task, plus where their configuration comes from.

The DAG files in ``dags/`` are wiring only; every task body is a few lines calling this
package (``config``: names and settings; ``retrain_tasks``; ``monitor_tasks``; ``airflow_adapters``,
all re-exported here). Functions taking ``Settings`` and a :class:`RetrainJob` are plain Python (tests call
them without Airflow); the few helpers that read Airflow's task context or Variables
import Airflow lazily, inside the function.

Configuration (nothing is hard-coded in the DAG files)
    Run conf / params (per run)    ``reason`` (schedule | drift | performance | feedback | manual,
                                   default ``schedule``), ``model_name``, ``rows``, ``seed``,
                                   ``data_path``, ``spec_path``, ``target``, ``positive_label``,
                                   ``decision_id``, ``force`` (train even when nothing changed),
                                   ``source`` (an object: window, base, sources; see training/sources/)
                                   or ``source_path`` (its YAML file), ``interval_end`` (ISO datetime:
                                   the data window's end; default the run's data_interval_end, else
                                   its run_after)
    Airflow Variable, else env     ``ledgerline_settings`` (JSON object of :class:`Settings` fields,
                                   overlaying the ``LEDGERLINE_*`` / ``MLFLOW_TRACKING_URI`` env),
                                   and, looked up as Variable ``<name lower-cased>`` then env ``<NAME>``:
        LEDGERLINE_MONITORED_MODELS        served models the monitoring DAG checks: ``name[=family]``,
                                           comma-separated (default: one model per family, named
                                           like the family)
        LEDGERLINE_MODEL_NAME__<FAMILY>    registered model the family's retrain DAG trains
                                           (default: the family name), e.g. ``..._CREDIT_RISK``
        LEDGERLINE_DATA__<FAMILY>          CSV/Parquet file to train on (default: the generator)
        LEDGERLINE_SPEC__<FAMILY>          dataset spec YAML for that file
        LEDGERLINE_SOURCE__<FAMILY>        source config YAML (data sources and window policy; instead
                                           of LEDGERLINE_DATA__<FAMILY>); a <spec-stem>.sources.yaml beside
                                           the spec is found by itself
        LEDGERLINE_TARGET__<FAMILY>, LEDGERLINE_POSITIVE_LABEL__<FAMILY>   when there is no spec
        LEDGERLINE_RETRAIN_ROWS            generator rows (default 20000)
        LEDGERLINE_MAX_CHUNKS              chunks a chunked family's training is mapped over
                                           (default 16; run conf ``max_chunks`` overrides)
    Environment only (read when the DAG file is parsed, so no database call at parse time)
        LEDGERLINE_RETRAIN_SCHEDULE        cron of the retrain DAGs (default ``0 3 * * 1``, Mondays;
                                           ``none``: triggered runs only)
        LEDGERLINE_MONITOR_SCHEDULE        cron of the monitoring DAG (default ``0 2 * * *``, daily)
        LEDGERLINE_AIRFLOW_RETRIES         retries of every task (default 2)
        LEDGERLINE_AIRFLOW_RETRY_DELAY_SECONDS   first retry delay, doubled each time (default 300)

Retries and idempotency of a retrain run (keyed on the DAG run and its snapshot)
    ingest    the snapshot is immutable per model and date: a retry re-writes nothing. When the
              window is empty, or the snapshot, spec and params equal the latest registered
              version's or the champion's (a version this DAG run registered does not count), it
              writes one ``nothing-new`` / ``unchanged`` ledger row naming the DAG run (a retry
              finds that row) and skips the rest of the run.
    validate  the MLflow run is created tagged with the DAG run id; a retry reuses a run of the
              same DAG run and snapshot digest whose validation passed, otherwise opens a new run
              (attempts that died half-way are marked FAILED). Failed validation is final: the
              task fails without retries (the snapshot cannot change) and nothing is trained.
    train     a retry first looks for a registered version of that MLflow run and returns it,
              so one DAG run never registers two versions.
    (families in ``CHUNKED_TRAINING`` train in three steps instead of ``train``)
    plan_chunks   the series of each chunk, written once per MLflow run (a retry reads them back).
    train_chunk   one mapped task per chunk; writes its part atomically under the data dir, keyed
                  by the MLflow run and chunk index. A retry (its worker was killed) trains that
                  chunk alone; a part already written is not trained again.
    gather        like ``train``: returns the version already registered from the run, else
                  gathers the parts into one model and registers it.
    gate      writes nothing; a retry re-scores.
    promote   a retry finds the ledger row of the version and returns it instead of writing a
              second one; if the champion moved since the gate ran, it re-gates first.
"""

from __future__ import annotations

from apps.orchestration.airflow_adapters import (
    TaskRun,
    airflow_lookup,
    airflow_settings,
    current_run,
    current_try,
    fail_fast,
    monitored_from_airflow,
    retrain_inputs,
)
from apps.orchestration.config import (
    DECISION_TAG,
    DEFAULT_MAX_CHUNKS,
    DEFAULT_REASON,
    DEFAULT_ROWS,
    MAX_CHUNKS_LIMIT,
    MONITORING_DAG_ID,
    REASONS,
    RETRAIN_DAG_PREFIX,
    RUN_TAG,
    SETTINGS_VARIABLE,
    DagConfig,
    Lookup,
    dag_config,
    env_lookup,
    family_key,
    family_slug,
    first_given,
    retrain_dag_id,
    settings_env,
    settings_from,
    timetable,
    triggered_run_id,
)
from apps.orchestration.monitor_tasks import (
    MonitoredModel,
    mark_triggered,
    monitor,
    monitored_models,
    registry_family,
    retrain_plan,
)
from apps.orchestration.retrain_tasks import (
    RetrainJob,
    decision_from_dict,
    decision_to_dict,
    gate,
    gather,
    ingest,
    option_params,
    plan_chunks,
    promote,
    record_no_change_once,
    registered_version,
    retrain_job,
    train,
    train_chunk,
    trains_in_chunks,
    validate,
)

__all__ = [
    "DECISION_TAG",
    "DEFAULT_MAX_CHUNKS",
    "DEFAULT_REASON",
    "DEFAULT_ROWS",
    "MAX_CHUNKS_LIMIT",
    "MONITORING_DAG_ID",
    "REASONS",
    "RETRAIN_DAG_PREFIX",
    "RUN_TAG",
    "SETTINGS_VARIABLE",
    "DagConfig",
    "Lookup",
    "MonitoredModel",
    "RetrainJob",
    "TaskRun",
    "airflow_lookup",
    "airflow_settings",
    "current_run",
    "current_try",
    "dag_config",
    "decision_from_dict",
    "decision_to_dict",
    "env_lookup",
    "fail_fast",
    "family_key",
    "family_slug",
    "first_given",
    "gate",
    "gather",
    "ingest",
    "mark_triggered",
    "monitor",
    "monitored_from_airflow",
    "monitored_models",
    "option_params",
    "plan_chunks",
    "promote",
    "record_no_change_once",
    "registered_version",
    "registry_family",
    "retrain_dag_id",
    "retrain_inputs",
    "retrain_job",
    "retrain_plan",
    "settings_env",
    "settings_from",
    "timetable",
    "train",
    "train_chunk",
    "trains_in_chunks",
    "triggered_run_id",
    "validate",
]
