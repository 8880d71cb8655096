"""ledgerline.airflow_api against a real Airflow api-server (simple auth manager, JWT from /auth/token)."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerline.airflow_api import AirflowApi, AirflowUnavailable, airflow_api, get_dag_run, trigger_dag_run
from ledgerline.app.orchestration import MONITORING_DAG_ID
from ledgerline.mlflow_server import start_process, stop_server, wait_for_http
from ledgerline.settings import Settings

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


def test_a_run_triggered_twice_with_one_run_id_is_one_run_and_its_state_is_readable(api_server: str) -> None:
    api = AirflowApi(api_server, USER, PASSWORD)
    run_id = f"api-test-{secrets.token_hex(3)}"
    conf = {"model_name": "credit-risk"}

    first = trigger_dag_run(api, MONITORING_DAG_ID, conf, run_id=run_id, note="from the test")
    again = trigger_dag_run(api, MONITORING_DAG_ID, {"other": 1}, run_id=run_id)
    read = get_dag_run(api, MONITORING_DAG_ID, run_id)

    assert first.run_id == again.run_id == read.run_id == run_id
    assert first.dag_id == MONITORING_DAG_ID and first.state == "queued" and read.state == "queued"
    assert read.url == f"{api_server}/dags/{MONITORING_DAG_ID}/runs/{run_id}"
    unnamed = trigger_dag_run(api, MONITORING_DAG_ID, conf)  # Airflow names it; a second run
    assert unnamed.run_id != run_id and unnamed.state == "queued"


def test_wrong_password_missing_dag_and_dead_server_are_airflow_unavailable(api_server: str) -> None:
    with pytest.raises(AirflowUnavailable, match="refused the login") as login:
        trigger_dag_run(AirflowApi(api_server, USER, "wrong"), MONITORING_DAG_ID, {})
    assert login.value.status == 401
    api = AirflowApi(api_server, USER, PASSWORD)
    with pytest.raises(AirflowUnavailable, match="no DAG 'no_such_dag'"):
        trigger_dag_run(api, "no_such_dag", {})
    with pytest.raises(AirflowUnavailable, match="no run 'nope'"):
        get_dag_run(api, MONITORING_DAG_ID, "nope")
    with pytest.raises(AirflowUnavailable, match="does not answer") as dead:
        get_dag_run(AirflowApi(f"http://127.0.0.1:{_free_port()}", None, None, timeout=2), MONITORING_DAG_ID, "x")
    assert dead.value.status is None


def test_settings_name_the_server_and_the_demo_password_is_found(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, airflow_url="http://af:8080/", airflow_user="u", airflow_password="p")
    assert airflow_api(settings) == AirflowApi("http://af:8080", "u", "p", 10.0)
    assert repr(airflow_api(settings)) == "AirflowApi(base_url='http://af:8080', username='u', timeout=10.0)"
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "gen"}\n')
    demo = airflow_api(Settings(home=tmp_path))
    assert (demo.base_url, demo.username, demo.password) == ("http://127.0.0.1:8080", "admin", "gen")
    assert airflow_api(Settings(home=tmp_path / "none")).username is None
