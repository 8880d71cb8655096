"""Airflow for the loop benchmark: api-server, scheduler, dag-processor and a Celery worker, as compose runs them.

The metadata database is a Postgres database of the bench, the broker a Redis database of the
machine (``REDIS_DB``, flushed before and after), Celery's result backend the metadata database
(``apps.airflow_demo.celery_env``, the same settings as docker-compose.yml and tests/dags/test_scheduler.py).
Every process runs in its own process group under the bench's temporary folder; runs are
triggered through the REST API with explicit logical dates and followed in the metadata database.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379"
REDIS_DB = 10  # the broker's database (tests/dags uses 14, other tests 11 and 13)
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DB}").flushdb()


class Stack:
    """The running Airflow of the bench; ``start`` registers each process with ``track`` (the bench stops them)."""

    def __init__(self, home: Path, meta_url: str, port: int, ledgerline_env: dict[str, str]) -> None:
        from apps.airflow_demo import celery_env

        self.home, self.meta_url, self.port = home, meta_url, port
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "LEDGERLINE_"))}
        env.update(ledgerline_env)
        env.update(celery_env(f"{REDIS_URL}/{REDIS_DB}", meta_url))
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # the bench triggers runs without a login
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "LEDGERLINE_RETRAIN_SCHEDULE": "none",  # the bench triggers every run with its logical date
            "LEDGERLINE_MONITOR_SCHEDULE": "none",
            "LEDGERLINE_AIRFLOW_RETRIES": "1",
            "LEDGERLINE_AIRFLOW_RETRY_DELAY_SECONDS": "2",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        })
        self.env = env
        self.engine = sa.create_engine(meta_url, poolclass=sa.pool.NullPool)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    def start(self, track: Callable[[subprocess.Popen[bytes]], None], *, concurrency: int = 2) -> None:
        from ledgerline.mlflow_server import start_process, wait_for_http

        flush_broker()
        with (self.home / "db-migrate.log").open("ab") as out:
            if subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"airflow db migrate failed:\n{_tail(self.home / 'db-migrate.log')}")
        for name in COMPONENTS:
            self.procs[name] = start_process([AIRFLOW, name], env=self.env, log_path=self.home / f"{name}.log")
            track(self.procs[name])
        self.procs["worker"] = start_process(
            [AIRFLOW, "celery", "worker", "--concurrency", str(concurrency), "--celery-hostname", "bench-loop@%h",
             "--pid", str(self.home / "worker.pid"), "--skip-serve-logs", "--without-mingle", "--without-gossip"],
            env=self.env, log_path=self.home / "worker.log")
        track(self.procs["worker"])
        wait_for_http(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=240, proc=self.procs["api-server"],
                      log_path=self.home / "api-server.log", name="airflow api-server")
        self.wait_for("the celery worker", lambda: " ready." in _tail(self.home / "worker.log", 400), 180)

    def failure(self, what: str) -> str:
        return what + "\n" + "\n".join(f"--- {p}\n{_tail(p)}" for p in sorted(self.home.glob("*.log")))

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SystemExit(self.failure(f"airflow {name} exited with {proc.returncode}"))

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self.check_alive()
            time.sleep(interval)
        raise SystemExit(self.failure(f"timed out after {timeout:.0f}s waiting for {what}"))

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def wait_dags(self, dag_ids: list[str]) -> None:
        def ready() -> bool:
            rows = self.rows("select dag_id from dag where is_paused = false and dag_id = any(:d)", d=dag_ids)
            return len(rows) == len(dag_ids)

        self.wait_for(f"the dag-processor to store {', '.join(dag_ids)}", ready, 240)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        base = f"http://127.0.0.1:{self.port}"
        if self._token is None:
            with urllib.request.urlopen(f"{base}/auth/token", timeout=30) as resp:
                self._token = json.load(resp)["access_token"]
        req = urllib.request.Request(f"{base}{path}", data=None if body is None else json.dumps(body).encode(),
                                     method=method, headers={"Authorization": f"Bearer {self._token}",
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)

    def set_variable(self, key: str, value: str) -> None:
        try:
            self._request("PATCH", f"/api/v2/variables/{key}", {"key": key, "value": value})
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            self._request("POST", "/api/v2/variables", {"key": key, "value": value})

    def trigger(self, dag_id: str, run_id: str, logical_date: datetime, conf: dict[str, Any]) -> None:
        body = {"dag_run_id": run_id, "logical_date": logical_date.isoformat(), "conf": conf}
        self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.rows("select state from dag_run where dag_id = :d and run_id = :r", d=dag_id, r=run_id)
        return str(rows[0][0]) if rows else None

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        return str(self.wait_for(f"run {run_id} of {dag_id}",
                                 lambda: (s := self.state(dag_id, run_id)) in ("success", "failed") and s, timeout))

    def run_ids(self, dag_id: str) -> list[str]:
        return [str(r[0]) for r in self.rows("select run_id from dag_run where dag_id = :d order by id", d=dag_id)]

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        rows = self.rows("select state from task_instance where dag_id = :d and run_id = :r and task_id = :t",
                         d=dag_id, r=run_id, t=task_id)
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        rows = self.rows("select task_id from task_instance where dag_id = :d and run_id = :r and state = 'failed'",
                         d=dag_id, r=run_id)
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self.engine.dispose()
        try:
            flush_broker()
        except Exception:  # noqa: BLE001 - Redis gone: nothing left to flush
            pass
