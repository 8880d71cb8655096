"""A real Airflow, deployed as compose deploys it, executes triggered retrain runs from start to
finish: api-server, scheduler and dag-processor on a Postgres metadata database, the
CeleryExecutor with the machine's Redis as broker (db 14 only, flushed before and after) and
the metadata database as Celery's result backend, and ``airflow celery worker`` processes
running the tasks. Not ``dag.test()``.

The stack starts once for the module; each test triggers its own run of its own model.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ledgerline import db
from ledgerline.app import orchestration as orch
from ledgerline.app.airflow_demo import celery_env
from ledgerline.mlflow_server import start_process, stop_server, wait_for_http
from ledgerline.registry import client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPONENTS = ("api-server", "scheduler", "dag-processor")
RUN_TIMEOUT = 420.0
AIRFLOW = str(Path(sys.executable).parent / "airflow")
REDIS_URL = "redis://127.0.0.1:6379"
BROKER_DB = 14  # the Redis database this module may use; flushed before and after
#: a task whose worker died is failed (and retried) after this long without a heartbeat
HEARTBEAT_TIMEOUT_S = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@dataclass
class CeleryAirflow:
    """The running stack: its environment, metadata DB and the logs of every process."""

    env: dict[str, str]
    meta_url: str
    home: Path
    procs: dict[str, Any] = field(default_factory=dict)
    engine: sa.Engine | None = None

    @property
    def logs(self) -> list[Path]:
        return sorted(self.home.glob("*.log"))

    def failure(self, what: str) -> str:
        return what + "\n" + "\n".join(f"--- {p}\n{_tail(p)}" for p in self.logs)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(interval)
        pytest.fail(self.failure(f"timed out after {timeout:.0f}s waiting for {what}"))

    def query(self, sql: str, **params: Any) -> list[Any]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.query(sql, **params)
        return rows[0][0] if rows else None

    def start_worker(self, name: str, concurrency: int) -> Any:
        """``airflow celery worker`` with its own celery hostname and pid file, in its own process group."""
        argv = [AIRFLOW, "celery", "worker", "--concurrency", str(concurrency), "--celery-hostname",
                f"{name}-{secrets.token_hex(3)}@%h", "--pid", str(self.home / f"{name}.pid"),
                "--skip-serve-logs", "--without-mingle", "--without-gossip"]
        proc = start_process(argv, env=self.env, log_path=self.home / f"{name}.log")
        self.procs[name] = proc
        self.wait_for(f"celery worker {name} to be ready",
                      lambda: proc.poll() is not None or " ready." in _tail(self.home / f"{name}.log", 400), 120)
        assert proc.poll() is None, self.failure(f"celery worker {name} exited with {proc.returncode}")
        return proc

    def wait_dag(self, dag_id: str) -> None:
        self.wait_for(f"the dag-processor to store {dag_id}, unpaused",
                      lambda: self.scalar("select is_paused = false from dag where dag_id = :d", d=dag_id), 180)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any], airflow_cli: Any) -> None:
        airflow_cli([AIRFLOW, "dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf)],
                    self.env, self.home / "trigger.out", 120)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        return self.scalar("select state from dag_run where dag_id = :d and run_id = :r", d=dag_id, r=run_id)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
        return str(self.wait_for(f"run {run_id} of {dag_id} to finish",
                                 lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s, timeout))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        rows = self.query("select task_id, map_index, state, try_number, hostname from task_instance "
                          "where dag_id = :d and run_id = :r order by task_id, map_index", d=dag_id, r=run_id)
        return [dict(r._mapping) for r in rows]


def _flush_broker() -> None:
    import redis

    redis.Redis.from_url(f"{REDIS_URL}/{BROKER_DB}").flushdb()


@pytest.fixture(scope="module")
def celery_airflow(
    make_database: Any,
    session_settings: Any,
    airflow_base_env: dict[str, str],
    airflow_env_for: Any,
    airflow_cli: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryAirflow]:
    """Migrated Postgres metadata DB, the three Airflow processes and one celery worker."""
    import importlib.util

    for module, why in (("asyncpg", "Airflow's async engine on Postgres"), ("airflow.providers.celery", "the CeleryExecutor")):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} ({why}) is not installed: it is in pyproject.toml; run `make lock install`")
    meta_url = make_database("airflow")
    port = _free_port()
    home = tmp_path_factory.mktemp("celery-airflow")
    env = airflow_env_for(
        airflow_base_env,
        session_settings,
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=meta_url,
        **celery_env(f"{REDIS_URL}/{BROKER_DB}", meta_url),  # what docker-compose.yml sets
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT_S),
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        LEDGERLINE_RETRAIN_SCHEDULE="none",  # only the runs the tests trigger
        LEDGERLINE_MONITOR_SCHEDULE="none",
    )
    _flush_broker()
    airflow_cli([AIRFLOW, "db", "migrate"], env, home / "db-migrate.out", 300)
    stack = CeleryAirflow(env, meta_url, home, engine=sa.create_engine(meta_url, poolclass=sa.pool.NullPool))
    try:
        for name in COMPONENTS:
            stack.procs[name] = start_process([AIRFLOW, name], env=env, log_path=home / f"{name}.log")
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=180, proc=stack.procs["api-server"],
                      log_path=home / "api-server.log", name="airflow api-server")
        stack.start_worker("worker-1", concurrency=2)
        yield stack
    finally:
        for proc in reversed(list(stack.procs.values())):
            if proc.poll() is None:
                stop_server(proc, timeout=20)
        if stack.engine is not None:
            stack.engine.dispose()
        sa.create_engine(meta_url).dispose()
        _flush_broker()


def test_a_celery_worker_executes_a_triggered_credit_retrain_run_with_its_reason(
    celery_airflow: CeleryAirflow, session_settings: Any, airflow_cli: Any
) -> None:
    stack = celery_airflow
    dag_id = orch.retrain_dag_id("credit-risk")
    model_name = f"credit-dags-celery-{secrets.token_hex(3)}"
    run_id = f"test-{model_name}"
    stack.wait_dag(dag_id)
    stack.trigger(dag_id, run_id, {"reason": "drift", "model_name": model_name, "rows": 2500}, airflow_cli)

    state = stack.wait_run(dag_id, run_id)
    tis = stack.task_instances(dag_id, run_id)
    assert state == "success", stack.failure(f"{tis}")
    assert {t["task_id"]: t["state"] for t in tis} == {t: "success" for t in ("ingest", "validate", "train", "gate", "promote")}
    # the worker ran them (a LocalExecutor would have run them in the scheduler's process tree)
    assert "execute_workload" in _tail(stack.home / "worker-1.log", 2000) or "Executing workload" in _tail(
        stack.home / "worker-1.log", 2000), stack.failure("the celery worker log shows no task")

    (row,) = db.ledger(session_settings.resolved_app_db_url(), model_name)
    assert row["trigger"] == "drift" and row["version"] == "1"
    run = client(session_settings).get_run(row["run_id"])
    assert run.data.tags["ledgerline.trigger"] == "drift"
    assert run.data.tags[orch.RUN_TAG] == f"{dag_id}/{run_id}"
