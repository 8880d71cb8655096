"""The few helpers that read Airflow's task context or Variables (Airflow is imported inside them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apps.orchestration.config import SETTINGS_VARIABLE, env_lookup, settings_from
from apps.orchestration.monitor_tasks import monitored_models, registry_family
from apps.orchestration.retrain_tasks import RetrainJob, retrain_job
from ledgerline.errors import AlreadyTrained, LedgerlineError, NothingNew
from ledgerline.settings import Settings


@dataclass(frozen=True)
class TaskRun:
    """What a task needs from Airflow's context."""

    dag_id: str
    run_id: str
    when: datetime  # logical date, or run_after for runs without one (triggered by an event)
    params: dict[str, Any]
    #: Airflow's data interval (None for a run without one; the end then is ``run_after``)
    interval_start: datetime | None = None
    interval_end: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.dag_id}/{self.run_id}"


def current_run() -> TaskRun:
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    dag_run = ctx["dag_run"]
    when = ctx.get("logical_date") or dag_run.run_after
    when = datetime.fromtimestamp(when.timestamp(), tz=UTC)  # a plain datetime, not pendulum's
    start: Any = ctx.get("data_interval_start")
    end: Any = ctx.get("data_interval_end")
    if end is None:  # a run with no data interval (triggered by an event): the window ends when it runs
        start, end = None, dag_run.run_after
    return TaskRun(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        when=when,
        params=dict(ctx.get("params") or {}),
        interval_start=_plain(start),
        interval_end=_plain(end),
    )


def _plain(t: Any) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t.timestamp(), tz=UTC)


def current_try() -> int:
    """The try number of the running task instance (1 on the first attempt)."""
    from airflow.sdk import get_current_context

    return int(get_current_context()["ti"].try_number or 1)


def airflow_lookup(name: str) -> str | None:
    """Airflow Variable ``name.lower()`` (which also reads ``AIRFLOW_VAR_*``), else env ``name``."""
    from airflow.sdk import Variable

    value = Variable.get(name.lower(), default=None)
    return str(value) if value not in (None, "") else env_lookup(name)


def airflow_settings() -> Settings:
    from airflow.sdk import Variable

    return settings_from(Variable.get(SETTINGS_VARIABLE, default=None))


def retrain_inputs(family: str) -> tuple[Settings, RetrainJob]:
    """Settings and the resolved job of the retrain run this task belongs to."""
    run = current_run()
    return airflow_settings(), retrain_job(family, run.params, when=run.when, dag_run=run.key, lookup=airflow_lookup,
                                           interval_start=run.interval_start, interval_end=run.interval_end)


def monitored_from_airflow(settings: Settings) -> list[dict[str, str]]:
    raw = airflow_lookup("LEDGERLINE_MONITORED_MODELS")
    return [m.as_dict() for m in monitored_models(raw, family_of=registry_family(settings))]


@contextmanager
def fail_fast() -> Iterator[None]:
    """Our domain errors (bad data, failed validation, bad conf) fail the task without retries:
    the same snapshot and conf would fail again. Anything else (network, database) is retried.

    A run with nothing to register (``NothingNew``: an empty window; ``AlreadyTrained``: inputs equal to
    a registered version's; the ledger row is written) skips the task and, through it, the rest of
    the run, which ends a success."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    try:
        yield
    except (AlreadyTrained, NothingNew) as exc:
        raise AirflowSkipException(str(exc)) from exc
    except LedgerlineError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
