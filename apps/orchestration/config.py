"""Names and configuration of the DAGs: ids, schedules, retries, and the settings a task rebuilds."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ledgerline import lineage
from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

RETRAIN_DAG_PREFIX = "ledgerline_retrain_"
MONITORING_DAG_ID = "ledgerline_monitoring"
SETTINGS_VARIABLE = "ledgerline_settings"
DEFAULT_REASON = "schedule"
#: training.pipeline.TRIGGERS, repeated here so DAG files can offer them without importing pandas
#: (tests/dags checks the two agree).
REASONS = ("schedule", "drift", "performance", "feedback", "manual")
DEFAULT_ROWS = 20_000
DEFAULT_MAX_CHUNKS = 16
MAX_CHUNKS_LIMIT = 256  # a mapped task per chunk: tens of tasks, never one per series
RUN_TAG = lineage.AIRFLOW_RUN  # "<dag_id>/<run_id>" on the MLflow run
DECISION_TAG = lineage.AIRFLOW_DECISION_ID
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]+")  # Airflow's default allowed_run_id_pattern

Lookup = Callable[[str], str | None]


# --------------------------------------------------------------------------- names


def family_slug(family: str) -> str:
    """``my-model`` -> ``my_model`` (DAG ids, env var suffixes)."""
    return re.sub(r"[^a-z0-9]+", "_", family.lower()).strip("_")


def retrain_dag_id(family: str) -> str:
    return f"{RETRAIN_DAG_PREFIX}{family_slug(family)}"


def family_key(name: str, family: str) -> str:
    """The per-family setting name, e.g. ``family_key("LEDGERLINE_DATA", "my-family")`` -> ``LEDGERLINE_DATA__MY_FAMILY``."""
    return f"{name}__{family_slug(family).upper()}"


def triggered_run_id(reason: str, model_name: str, decision_id: object) -> str:
    """A deterministic DAG run id per monitoring decision: triggering twice finds the first run."""
    raw = f"{reason}__{model_name[:100]}__{decision_id}"
    return _RUN_ID_UNSAFE.sub("-", raw)[:240]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DagConfig:
    """What the DAG files need while being parsed; environment only (no Variable, no database)."""

    retrain_schedule: str | None = "0 3 * * 1"  # None: only triggered runs
    monitor_schedule: str | None = "0 2 * * *"
    retries: int = 2
    retry_delay: timedelta = timedelta(minutes=5)

    def default_args(self) -> dict[str, Any]:
        return {
            "owner": "ledgerline",
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "retry_exponential_backoff": True,
            "max_retry_delay": max(self.retry_delay * 8, self.retry_delay),
        }


def _schedule(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in ("", "none", "manual", "off") else value.strip()


def dag_config(environ: Mapping[str, str] | None = None) -> DagConfig:
    """``LEDGERLINE_*_SCHEDULE`` take a cron expression or ``none`` (triggered runs only)."""
    env = os.environ if environ is None else environ
    try:
        return DagConfig(
            retrain_schedule=_schedule(env.get("LEDGERLINE_RETRAIN_SCHEDULE", DagConfig.retrain_schedule)),
            monitor_schedule=_schedule(env.get("LEDGERLINE_MONITOR_SCHEDULE", DagConfig.monitor_schedule)),
            retries=int(env.get("LEDGERLINE_AIRFLOW_RETRIES", DagConfig.retries)),
            retry_delay=timedelta(seconds=float(env.get("LEDGERLINE_AIRFLOW_RETRY_DELAY_SECONDS", 300))),
        )
    except ValueError as exc:
        raise LedgerlineError(f"bad Airflow setting in the environment: {exc}") from exc


def timetable(expression: str | None) -> Any:
    """The schedule for a DAG: ``expression`` as a cron trigger that never runs a past slot on start.

    Airflow 3.3's ``CronTriggerTimetable`` treats ``run_immediately=False`` (also what a plain
    cron string gets) like ``None``: a DAG seen for the first time runs the most recent slot when
    it is within 10% of the period, so a fresh ``make demo`` on a Monday retrained at once. A zero
    buffer makes the first run the next slot in the future. ``None``: triggered runs only.
    """
    if expression is None:
        return None
    from airflow.sdk import CronTriggerTimetable

    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=timedelta(0))


def env_lookup(name: str) -> str | None:
    return os.environ.get(name) or None


def settings_from(overlay: Mapping[str, Any] | str | None) -> Settings:
    """``Settings()`` from the environment, with ``overlay`` (a dict or JSON object) on top."""
    if isinstance(overlay, str):
        try:
            overlay = json.loads(overlay) if overlay.strip() else None
        except json.JSONDecodeError as exc:
            raise LedgerlineError(f"Airflow Variable {SETTINGS_VARIABLE} is not JSON: {exc}") from exc
    if overlay is not None and not isinstance(overlay, Mapping):
        raise LedgerlineError(f"Airflow Variable {SETTINGS_VARIABLE} must be a JSON object of settings fields")
    return Settings(**dict(overlay or {}))


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``LEDGERLINE_*`` environment an Airflow process needs to rebuild them.

    Locations are resolved (absolute app DB URL, data dir, home) so a process with another
    working directory points at the same files.
    """
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        # nested models and lists as JSON, which pydantic-settings parses back
        env[f"LEDGERLINE_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    env["LEDGERLINE_HOME"] = str(settings.home.resolve())
    env["LEDGERLINE_APP_DB_URL"] = settings.resolved_app_db_url()
    env["LEDGERLINE_DATA_DIR"] = str(settings.resolved_data_dir())
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    return env


def first_given(*values: Any) -> Any:
    """The first value that is neither None nor empty."""
    for v in values:
        if v is not None and v != "":
            return v
    return None
