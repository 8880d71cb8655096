"""Run Airflow in a child process for the DAG tests: ``inspect`` the DAG folder or ``test`` one DAG.

Airflow reads its configuration (AIRFLOW_HOME, metadata DB, DAGs folder) when it is first
imported and keeps global state, so the tests never import it themselves: they start this
script with the environment set and read the JSON it writes to ``--out``.

    python airflow_runner.py inspect --out result.json
    python airflow_runner.py test <dag_id> --out result.json [--conf JSON] [--logical-date ISO]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEAVY_MODULES = ("pandas", "numpy", "mlflow", "xgboost", "sklearn", "great_expectations", "evidently", "ledgerline.db")


def _bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def inspect() -> dict[str, Any]:
    bag = _bag()
    dags = {}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for t in dag.tasks:
            tasks[t.task_id] = {
                "upstream": sorted(t.upstream_task_ids),
                "downstream": sorted(t.downstream_task_ids),
                "retries": t.retries,
                "retry_delay_seconds": t.retry_delay.total_seconds(),
                "trigger_rule": str(t.trigger_rule),
                "operator": type(t).__name__,
                "mapped": "Mapped" in type(t).__name__,
            }
        dags[dag_id] = {
            "fileloc": dag.fileloc,
            "tags": sorted(dag.tags),
            "schedule": str(getattr(dag.timetable, "expression", dag.timetable)),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "params": {k: dag.params.get_param(k).dump() for k in dag.params},
            "topological_order": [t.task_id for t in dag.topological_sort()] if hasattr(dag, "topological_sort") else [],
            "tasks": tasks,
        }
    return {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dags": dags,
        "heavy_modules_loaded": [m for m in HEAVY_MODULES if m in sys.modules],
    }


def test(dag_id: str, conf: dict[str, Any], logical_date: datetime) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = _bag().get_dag(dag_id)
    if dag is None:
        raise SystemExit(f"no DAG {dag_id}")
    dr = dag.test(logical_date=logical_date, run_conf=conf)
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id)
        ).all()
        tasks: dict[str, list[dict[str, Any]]] = {}
        for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index)):
            tasks.setdefault(ti.task_id, []).append(
                {"map_index": ti.map_index, "state": str(ti.state) if ti.state else None, "try_number": ti.try_number}
            )
        runs = [
            {
                "dag_id": r.dag_id,
                "run_id": r.run_id,
                "state": str(r.state),
                "run_type": str(r.run_type),
                "conf": r.conf,
                "logical_date": r.logical_date.isoformat() if r.logical_date else None,
            }
            for r in session.scalars(select(DagRun).order_by(DagRun.id)).all()
        ]
    return {"dag_id": dag_id, "run_id": dr.run_id, "state": str(dr.state), "tasks": tasks, "dag_runs": runs}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["inspect", "test"])
    p.add_argument("dag_id", nargs="?")
    p.add_argument("--out", required=True)
    p.add_argument("--conf", default="{}")
    p.add_argument("--logical-date", default=None)
    args = p.parse_args()
    if args.command == "inspect":
        result = inspect()
    else:
        when = datetime.fromisoformat(args.logical_date) if args.logical_date else datetime.now(UTC)
        result = test(args.dag_id, json.loads(args.conf), when)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
