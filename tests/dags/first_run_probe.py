"""Child-process probe for the DAG tests: when would the scheduler start each DAG's first run?

Parses the DAG folder, serializes and deserializes every DAG (what the scheduler reads), and asks
its timetable for the first automated run with no previous run, as if the scheduler looked at
``--now``. Prints JSON ``{dag_id: {"run_after": ISO or null, "timetable": class name}}``.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from typing import Any


def probe(now: datetime) -> dict[str, Any]:
    import airflow.timetables.trigger as trigger
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    trigger.utcnow = lambda: now  # type: ignore[assignment]  # the scheduler's clock, in this process only
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    out: dict[str, Any] = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        scheduled = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
        info = scheduled.timetable.next_dagrun_info(
            last_automated_data_interval=None,
            restriction=TimeRestriction(earliest=None, latest=None, catchup=scheduled.catchup),
        )
        out["dags"][dag_id] = {
            "run_after": info.run_after.isoformat() if info else None,
            "timetable": type(scheduled.timetable).__name__,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--now", required=True, help="ISO time with offset, e.g. 2026-11-30T09:00:00+00:00")
    args = parser.parse_args()
    import pendulum

    print(json.dumps(probe(pendulum.parse(args.now))))


if __name__ == "__main__":
    main()
