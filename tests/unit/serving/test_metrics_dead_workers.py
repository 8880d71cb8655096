"""/metrics across worker processes: a worker that died without cleaning up (kill -9) does not
leave its last gauge values (database down, a full queue) in the aggregate; its counters stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEAD_WORKER = """
import os
from serving.metrics import ServingMetrics
m = ServingMetrics()
m.log_state(pending_rows=1234, capacity=10, full=True, db_up=False)
m.log_written(7)
os._exit(0)  # like kill -9: no lifespan shutdown, no mark_process_dead
"""


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


LIVE_WORKER = """
import os, sys
from serving.metrics import ServingMetrics
m = ServingMetrics()
m.log_state(pending_rows=0, capacity=10, full=False, db_up=True)
sys.stdout.write(m.render().decode())
os._exit(0)
"""


def run(script: str, metrics_dir: Path) -> str:
    """A worker process (prometheus_client picks its multiprocess mode when it is imported)."""
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", script], check=True, cwd=root, env=env, capture_output=True, text=True).stdout


def test_a_dead_worker_s_gauges_leave_metrics_but_its_counters_stay(tmp_path: Path) -> None:
    run(DEAD_WORKER, tmp_path)
    assert list(tmp_path.glob("gauge_livemin_*.db"))
    text = run(LIVE_WORKER, tmp_path)  # the live worker answers /metrics: database up, empty queue
    assert sample(text, "ledgerline_serving_log_database_up") == 1
    assert sample(text, "ledgerline_serving_log_queue_rows") == 0
    assert sample(text, "ledgerline_serving_log_buffer_full") == 0
    assert sample(text, "ledgerline_serving_log_buffer_capacity_rows") == 10
    assert sample(text, "ledgerline_serving_log_written_rows_total") == 7
