"""A manual retrain through model management starts the family's DAG on a real Airflow api-server (the
client's own tests are in test_batch_jobs.py, which has an Airflow of its own)."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerline.airflow_api import AirflowApi, get_dag_run
from ledgerline.mlflow_server import start_process, stop_server, wait_for_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIRFLOW = str(Path(sys.executable).parent / "airflow")
USER, PASSWORD = "ledgerline", secrets.token_urlsafe(12)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(
    make_database: Any, session_settings: Any, airflow_base_env: dict[str, str], airflow_env_for: Any,
    airflow_cli: Any, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """An api-server on a migrated Postgres metadata DB whose DAGs were serialized (no scheduler: runs stay queued)."""
    home = tmp_path_factory.mktemp("airflow-api")
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    env = airflow_env_for(
        airflow_base_env, session_settings,
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=make_database("airflow_api"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
    )
    airflow_cli([AIRFLOW, "db", "migrate"], env, home / "db-migrate.log", 300)
    airflow_cli([AIRFLOW, "dags", "reserialize"], env, home / "reserialize.log", 300)
    proc = start_process([AIRFLOW, "api-server"], env=env, log_path=home / "api-server.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=180, proc=proc,
                      log_path=home / "api-server.log", name="airflow api-server")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc, timeout=20)


def test_a_manual_retrain_through_model_management_starts_the_familys_dag_and_is_in_the_ledger(
    api_server: str, train_credit: Any
) -> None:
    from ledgerline import db
    from ledgerline.app.management import PipelineManagement
    from serving.management import Actor

    trained = train_credit("credit-pipeline")
    settings = trained.settings.model_copy(update={"airflow_url": api_server, "airflow_user": USER, "airflow_password": PASSWORD})
    run = PipelineManagement(settings).retrain("credit-pipeline", note="new bureau data", actor=Actor("carol", "admin key"))
    assert run["dag_id"] == "ledgerline_retrain_credit_risk" and run["dag_run_id"].startswith("manual__credit-pipeline__")
    assert run["url"] == f"{api_server}/dags/{run['dag_id']}/runs/{run['dag_run_id']}" and run["state"] == "queued"
    read = get_dag_run(AirflowApi(api_server, USER, PASSWORD), run["dag_id"], run["dag_run_id"])
    assert read.state == "queued"
    row = db.ledger(settings.resolved_app_db_url(), "credit-pipeline")[-1]
    assert row["action"] == "retrain-request" and "carol (admin key): new bureau data" in row["reasons"][0]
    assert run["dag_run_id"] in row["reasons"][1]
