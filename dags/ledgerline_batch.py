"""Batch scoring: one job per run (``ledgerline_batch_score``), and a daily file drop (``ledgerline_batch_daily``).

``ledgerline_batch_score`` is triggered by the serving API (``POST /v1/models/{name}/batches``)
through Airflow's REST API, with ``{"batch_id": ...}``; its one task scores the job chunk by
chunk (``serving.batch_jobs.run_batch``). A retried or restarted task resumes after the last
committed chunk. A problem with the job itself (bad file, too many bad rows) fails it at once;
anything else (database, artifact store away) is retried.

``ledgerline_batch_daily`` scores the object ``LEDGERLINE_BATCH_INPUT`` (``{ds}`` is the logical
date) with ``LEDGERLINE_BATCH_MODEL``'s champion into ``LEDGERLINE_BATCH_OUTPUT``, on the cron
``LEDGERLINE_BATCH_SCHEDULE`` (default ``none``: triggered runs only); idempotent per logical date.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from apps.orchestration import dag_config, timetable

CONFIG = dag_config()
BATCH_DAG_ID = "ledgerline_batch_score"  # serving.batch_jobs.BATCH_DAG_ID (tests/dags checks they agree)
SCHEDULED_DAG_ID = "ledgerline_batch_daily"
_schedule = os.environ.get("LEDGERLINE_BATCH_SCHEDULE", "none").strip()


@dag(
    dag_id=BATCH_DAG_ID,
    description="Score one batch job submitted through the serving API",
    schedule=None,
    catchup=False,
    max_active_runs=16,
    default_args={**CONFIG.default_args(), "execution_timeout": timedelta(hours=12)},
    params={"batch_id": Param("", type="string", description="the job to score (POST /v1/models/{name}/batches)")},
    tags=["ledgerline", "batch"],
    doc_md=__doc__,
)
def batch_score() -> None:
    @task
    def score() -> str:
        from airflow.sdk import get_current_context

        from apps import orchestration as orch
        from serving.batch_jobs import run_batch

        ctx = get_current_context()
        with orch.fail_fast():
            return run_batch(orch.airflow_settings(), str(ctx["params"]["batch_id"]), attempt=int(ctx["ti"].try_number))

    score()


@dag(
    dag_id=SCHEDULED_DAG_ID,
    description="Score the day's file drop into a dated results object",
    schedule=timetable(None if _schedule.lower() in ("", "none", "off") else _schedule),
    catchup=False,
    max_active_runs=1,
    default_args={**CONFIG.default_args(), "execution_timeout": timedelta(hours=12)},
    tags=["ledgerline", "batch"],
    doc_md=__doc__,
)
def batch_daily() -> None:
    @task
    def score_drop() -> dict[str, Any]:
        from airflow.sdk import get_current_context

        from apps import orchestration as orch
        from serving.batch_jobs import score_dated

        ctx = get_current_context()
        run = orch.current_run()
        lookup = orch.airflow_lookup
        model, src, dst = (lookup(n) for n in ("LEDGERLINE_BATCH_MODEL", "LEDGERLINE_BATCH_INPUT", "LEDGERLINE_BATCH_OUTPUT"))
        with orch.fail_fast():
            if not (model and src and dst):
                from ledgerline.errors import LedgerlineError

                raise LedgerlineError("set LEDGERLINE_BATCH_MODEL, LEDGERLINE_BATCH_INPUT and LEDGERLINE_BATCH_OUTPUT "
                                      "(Variables or environment) for the daily batch")
            return score_dated(orch.airflow_settings(), model, src, dst, run.when.strftime("%Y-%m-%d"),
                               attempt=int(ctx["ti"].try_number))

    score_drop()


batch_score()
batch_daily()
