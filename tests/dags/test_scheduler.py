"""A real Airflow, deployed as compose deploys it, executes triggered retrain runs from start to
finish: api-server, scheduler and dag-processor on a Postgres metadata database, the
CeleryExecutor with the machine's Redis as broker (db 14 only, flushed before and after) and
the metadata database as Celery's result backend, and ``airflow celery worker`` processes
running the tasks. Not ``dag.test()``.

The stack starts once for the module; each test triggers its own run of its own model. The
chunked forecast run SIGKILLs the worker (its whole process tree) while it trains a chunk and
starts another: only that chunk runs again, and one version is registered.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from apps import orchestration as orch
from apps.airflow_demo import celery_env
from ledgerline import db
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
FORECAST_ROWS = 600  # generator rows of the forecast run: a few dozen short monthly series
CHUNKS = 4


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

    def start_worker(self, name: str, concurrency: int, *, wait: bool = True) -> Any:
        """``airflow celery worker`` with its own celery hostname and pid file, in its own process group."""
        argv = [AIRFLOW, "celery", "worker", "--concurrency", str(concurrency), "--celery-hostname",
                f"{name}-{secrets.token_hex(3)}@%h", "--pid", str(self.home / f"{name}.pid"),
                "--skip-serve-logs", "--without-mingle", "--without-gossip"]
        proc = start_process(argv, env=self.env, log_path=self.home / f"{name}.log")
        self.procs[name] = proc
        if wait:
            self.wait_worker(name)
        return proc

    def wait_worker(self, name: str) -> None:
        proc, log = self.procs[name], self.home / f"{name}.log"
        self.wait_for(f"celery worker {name} to be ready",
                      lambda: proc.poll() is not None or " ready." in _tail(log, 400), 120, interval=0.5)
        assert proc.poll() is None, self.failure(f"celery worker {name} exited with {proc.returncode}")

    def wait_dag(self, dag_id: str) -> None:
        self.wait_for(f"the dag-processor to store {dag_id}, unpaused",
                      lambda: self.scalar("select is_paused = false from dag where dag_id = :d", d=dag_id), 180)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
        """Trigger a run through the REST API, as the UI does (every user is admin in this test)."""
        import urllib.request

        base = f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"
        with urllib.request.urlopen(f"{base}/auth/token", timeout=30) as resp:
            token = json.load(resp)["access_token"]
        body = json.dumps({"dag_run_id": run_id, "logical_date": None, "conf": conf}).encode()
        req = urllib.request.Request(f"{base}/api/v2/dags/{dag_id}/dagRuns", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.load(resp)["dag_run_id"] == run_id

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
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",  # the tests trigger runs without a login
        LEDGERLINE_RETRAIN_SCHEDULE="none",  # only the runs the tests trigger
        LEDGERLINE_MONITOR_SCHEDULE="none",
    )
    _flush_broker()
    airflow_cli([AIRFLOW, "db", "migrate"], env, home / "db-migrate.out", 300)
    stack = CeleryAirflow(env, meta_url, home, engine=sa.create_engine(meta_url, poolclass=sa.pool.NullPool))
    try:
        for name in COMPONENTS:
            stack.procs[name] = start_process([AIRFLOW, name], env=env, log_path=home / f"{name}.log")
        # one task at a time: the kill test knows which chunk the worker was running
        stack.start_worker("worker-1", concurrency=1, wait=False)
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=180, proc=stack.procs["api-server"],
                      log_path=home / "api-server.log", name="airflow api-server")
        stack.wait_worker("worker-1")
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
    celery_airflow: CeleryAirflow, session_settings: Any
) -> None:
    stack = celery_airflow
    dag_id = orch.retrain_dag_id("credit-risk")
    model_name = f"credit-dags-celery-{secrets.token_hex(3)}"
    run_id = f"test-{model_name}"
    stack.wait_dag(dag_id)
    stack.trigger(dag_id, run_id, {"reason": "drift", "model_name": model_name, "rows": 2500})

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


def _kill_tree(proc: Any) -> list[int]:
    """SIGKILL a worker and every process under it (the task processes have their own process
    groups, so killing the worker's group is not enough): a machine that dies."""
    import psutil

    root = psutil.Process(proc.pid)
    victims = [root, *root.children(recursive=True)]
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)
    psutil.wait_procs(victims, timeout=10)
    return [v.pid for v in victims]


def test_a_killed_worker_re_runs_only_its_chunk_and_the_run_registers_one_version(
    celery_airflow: CeleryAirflow, session_settings: Any
) -> None:
    from training import pipeline

    stack = celery_airflow
    family = "spending-forecast"
    assert orch.trains_in_chunks(family)
    dag_id = orch.retrain_dag_id(family)
    model_name = f"forecast-dags-celery-{secrets.token_hex(3)}"
    run_id = f"test-{model_name}"
    stack.wait_dag(dag_id)
    stack.trigger(dag_id, run_id, {"reason": "manual", "model_name": model_name, "rows": FORECAST_ROWS,
                                   "max_chunks": CHUNKS})

    def chunk_being_trained() -> int | None:
        """A chunk whose task runs on worker-1 and has not written its part yet."""
        running = [t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == "train_chunk" and t["state"] == "running"]
        if not running:
            return None
        mlflow_run = _validated_run(session_settings, model_name, dag_id, run_id)
        index = int(running[0]["map_index"])
        part = pipeline.chunk_dir(session_settings, model_name, mlflow_run) / f"part-{index:04d}.pkl"
        return None if part.exists() else index + 1  # +1: chunk 0 is a truthy answer too

    killed = stack.wait_for("worker-1 to train a chunk", chunk_being_trained, RUN_TIMEOUT, interval=0.3) - 1
    _kill_tree(stack.procs.pop("worker-1"))
    assert stack.run_state(dag_id, run_id) == "running"
    stack.start_worker("worker-2", concurrency=2)  # another machine takes over, two chunks at a time

    state = stack.wait_run(dag_id, run_id)
    tis = stack.task_instances(dag_id, run_id)
    assert state == "success", stack.failure(f"{tis}")
    chunks = {t["map_index"]: t for t in tis if t["task_id"] == "train_chunk"}
    assert sorted(chunks) == list(range(CHUNKS)), tis
    assert all(t["state"] == "success" for t in tis), tis
    # the killed chunk ran a second time, no other chunk (nor any other task) did
    assert {i: t["try_number"] for i, t in chunks.items()} == {i: 2 if i == killed else 1 for i in range(CHUNKS)}
    assert [t["task_id"] for t in tis if t["try_number"] != 1] == ["train_chunk"]

    versions = list(client(session_settings).search_model_versions(f"name = '{model_name}'"))
    assert [v.version for v in versions] == ["1"], "one DAG run registers one version"
    mlflow_run = versions[0].run_id
    # which attempt wrote each chunk's part, as logged to the run for the data scientist
    import mlflow

    summary = mlflow.artifacts.load_dict(f"runs:/{mlflow_run}/training/chunks.json")
    assert {c["index"]: c["attempt"] for c in summary["chunks"]} == {i: 2 if i == killed else 1 for i in range(CHUNKS)}
    assert not list(pipeline.chunk_dir(session_settings, model_name, mlflow_run).glob("part-*.pkl")), "parts removed"

    # a retried gather (the task cleared and run again) finds the version instead of registering another
    job = orch.retrain_job(family, {"model_name": model_name, "rows": FORECAST_ROWS, "max_chunks": CHUNKS},
                           when=_logical_day(stack, dag_id, run_id), dag_run=f"{dag_id}/{run_id}")
    snapshot_uri = client(session_settings).get_run(mlflow_run).data.tags["ledgerline.snapshot_uri"]
    assert orch.gather(session_settings, job, snapshot_uri, mlflow_run) == "1"
    assert len(client(session_settings).search_model_versions(f"name = '{model_name}'")) == 1


def _validated_run(settings: Any, model_name: str, dag_id: str, run_id: str) -> str:
    exp = client(settings).get_experiment_by_name(settings.experiment_name(model_name))
    runs = client(settings).search_runs([exp.experiment_id], f"tags.`{orch.RUN_TAG}` = '{dag_id}/{run_id}'") if exp else []
    return str(runs[0].info.run_id) if runs else ""


def _logical_day(stack: CeleryAirflow, dag_id: str, run_id: str) -> str:
    when = stack.scalar("select coalesce(logical_date, run_after) from dag_run where dag_id = :d and run_id = :r",
                        d=dag_id, r=run_id)
    return str(when)[:10]
