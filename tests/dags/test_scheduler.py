"""A real Airflow (api-server, scheduler, dag-processor, LocalExecutor) on a Postgres metadata
database executes a triggered retrain run from start to finish: not only ``dag.test()``."""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ledgerline import db
from ledgerline.app import orchestration as orch
from ledgerline.mlflow_server import start_process, stop_server, wait_for_http
from ledgerline.registry import client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = orch.retrain_dag_id("credit-risk")
COMPONENTS = ("api-server", "scheduler", "dag-processor")
RUN_TIMEOUT = 420.0
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _wait_for(what: str, check: Callable[[], Any], timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n" + "\n".join(f"--- {p}\n{_tail(p)}" for p in logs))


@pytest.fixture
def airflow_on_postgres(
    make_database: Any,
    session_settings: Any,
    airflow_base_env: dict[str, str],
    airflow_env_for: Any,
    airflow_cli: Any,
    tmp_path: Path,
) -> Iterator[tuple[dict[str, str], str, Path]]:
    """Migrated Postgres metadata DB and the three Airflow processes, each in its own process group."""
    import importlib.util

    if importlib.util.find_spec("asyncpg") is None:  # Airflow's async engine on Postgres needs it
        pytest.fail("asyncpg is not installed: it is in pyproject.toml; run `make lock install`")
    meta_url = make_database("airflow")
    port = _free_port()
    home = tmp_path / "airflow"
    env = airflow_env_for(
        airflow_base_env,
        session_settings,
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=meta_url,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        LEDGERLINE_RETRAIN_SCHEDULE="none",  # only the run this test triggers
        LEDGERLINE_MONITOR_SCHEDULE="none",
    )
    airflow_cli([AIRFLOW, "db", "migrate"], env, home / "db-migrate.log", 300)
    procs = []
    try:
        for name in COMPONENTS:
            procs.append(start_process([AIRFLOW, name], env=env, log_path=home / f"{name}.log"))
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=180, proc=procs[0],
                      log_path=home / "api-server.log", name="airflow api-server")
        yield env, meta_url, home
    finally:
        for proc in reversed(procs):
            stop_server(proc, timeout=20)
        sa.create_engine(meta_url).dispose()


def test_the_scheduler_executes_a_triggered_retrain_run_with_its_reason(
    airflow_on_postgres: tuple[dict[str, str], str, Path], session_settings: Any, airflow_cli: Any
) -> None:
    env, meta_url, home = airflow_on_postgres
    logs = [home / f"{name}.log" for name in COMPONENTS]
    engine = sa.create_engine(meta_url, poolclass=sa.pool.NullPool)
    model_name = f"credit-dags-scheduler-{secrets.token_hex(3)}"
    run_id = f"test-{model_name}"

    def scalar(sql: str, **params: Any) -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    _wait_for("the dag-processor to store the retrain DAG, unpaused",
              lambda: scalar("select is_paused = false from dag where dag_id = :d", d=DAG_ID), 180, logs)
    conf = {"reason": "drift", "model_name": model_name, "rows": 2500}
    airflow_cli([AIRFLOW, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf)],
                env, home / "trigger.log", 120)

    state = _wait_for(
        "the triggered run to finish",
        lambda: (s := scalar("select state from dag_run where dag_id = :d and run_id = :r", d=DAG_ID, r=run_id))
        in ("success", "failed") and s,
        RUN_TIMEOUT,
        logs,
    )
    with engine.connect() as conn:
        tis = dict(conn.execute(sa.text("select task_id, state from task_instance where run_id = :r"), {"r": run_id}).all())
    engine.dispose()
    assert state == "success", f"{tis}\n" + "\n".join(f"--- {p}\n{_tail(p)}" for p in logs)
    assert tis == {t: "success" for t in ("ingest", "validate", "train", "gate", "promote")}

    (row,) = db.ledger(session_settings.resolved_app_db_url(), model_name)
    assert row["trigger"] == "drift" and row["version"] == "1"
    run = client(session_settings).get_run(row["run_id"])
    assert run.data.tags["ledgerline.trigger"] == "drift"
    assert run.data.tags[orch.RUN_TAG] == f"{DAG_ID}/{run_id}"
