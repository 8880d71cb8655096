"""Starting Airflow never runs a DAG by itself: the first run of every DAG is its next slot.

Airflow 3.3's CronTriggerTimetable runs the most recent slot of a DAG it sees for the first time
when that slot is recent (within 10% of the period), which made a fresh ``make demo`` on a Monday
retrain and move ``@champion`` on its own. The probe asks each DAG's timetable, as the scheduler
deserializes it, for the first run at a given moment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

PROBE = Path(__file__).resolve().parent / "first_run_probe.py"


def first_runs(env: dict[str, str], now: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(PROBE), "--now", now], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["import_errors"] == {}
    return dict(result["dags"])


@pytest.mark.parametrize(
    "now",
    [
        "2026-11-30T03:30:00+00:00",  # a Monday, half an hour after the weekly retrain slot
        "2026-11-30T09:00:00+00:00",  # the same Monday morning, when someone runs `make demo`
        "2026-12-01T02:05:00+00:00",  # five minutes after the daily monitoring slot
    ],
)
def test_no_dag_runs_a_past_slot_when_airflow_first_sees_it(airflow_base_env: dict[str, str], now: str) -> None:
    runs = first_runs(airflow_base_env, now)

    assert runs, "the DAG folder has no DAGs"
    for dag_id, run in runs.items():
        if run["timetable"] == "NullTimetable":  # triggered runs only (the batch DAGs by default): never on its own
            assert run["run_after"] is None, dag_id
            continue
        assert run["run_after"] is not None, dag_id
        assert datetime.fromisoformat(run["run_after"]) > datetime.fromisoformat(now), (dag_id, run)


def test_the_weekly_retrain_still_runs_at_its_next_monday_slot(airflow_base_env: dict[str, str]) -> None:
    runs = first_runs(airflow_base_env, "2026-11-30T09:00:00+00:00")

    assert runs["ledgerline_retrain_credit_risk"]["run_after"] == "2026-12-07T03:00:00+00:00"
    assert runs["ledgerline_monitoring"]["run_after"] == "2026-12-01T02:00:00+00:00"
    assert runs["ledgerline_batch_score"]["timetable"] == runs["ledgerline_batch_daily"]["timetable"] == "NullTimetable"
