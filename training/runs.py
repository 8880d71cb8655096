"""What every training step shares: progress reporting and the MLflow run it works in."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ledgerline import lineage
from ledgerline.settings import Settings

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def log_progress(msg: str) -> None:
    logger.info(msg)


@contextmanager
def step(progress: Progress, label: str) -> Iterator[None]:
    progress(f"{label} ...")
    t0 = time.perf_counter()
    yield
    progress(f"{label} done ({time.perf_counter() - t0:.1f}s)")


@contextmanager
def resumed(run_id: str) -> Iterator[object]:
    """``mlflow.start_run(run_id)`` in the run's own experiment, whatever experiment the process's
    fluent API had active (a long-lived worker, or another library, may have set one)."""
    import mlflow

    mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def configure_mlflow(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri())


def experiment_id(settings: Settings, model_name: str) -> str:
    from ledgerline.registry import ensure_experiment

    return ensure_experiment(settings, settings.experiment_name(model_name), {lineage.MODEL_NAME: model_name})


def unregister(c: Any, name: str, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        for mv in c.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
            c.delete_model_version(name, mv.version)
    except MlflowException:
        logger.exception("could not remove the half-registered version of %s from run %s", name, run_id)


def fail_if_running(c: Any, run_id: str) -> None:
    if c.get_run(run_id).info.status == "RUNNING":
        c.set_terminated(run_id, "FAILED")
