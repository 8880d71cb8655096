"""Celery settings of Airflow's CeleryExecutor: Airflow's defaults, plus the modules every task imports.

``[celery] celery_config_options = apps.celery_config.CELERY_CONFIG`` (set by
:func:`apps.airflow_demo.celery_env`). Airflow 3 runs each task in a process forked
from a Celery pool process, so whatever the worker imported at start is already loaded in
every task: the pipeline, pandas, MLflow, Great Expectations and the families' training
plug-ins are imported once per worker instead of once per task (tens of seconds per task on a
busy 2-core machine, paid by every chunk of a mapped training). Only workers import them; the
scheduler and the api-server read this module without importing anything heavy.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from ledgerline.families import FAMILIES

#: imported by each worker when it starts (Celery's ``imports`` setting)
PRELOADED_MODULES = (
    "apps.orchestration",
    "training.pipeline",
    "expectations",
    "monitoring.jobs",
    *(f"families.{stem}.{module}" for stem in FAMILIES.values() for module in ("train", "fit")),
    "prophet",  # the forecast family's chunks import it lazily: seconds per chunk task otherwise
)

CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, "imports": PRELOADED_MODULES}
