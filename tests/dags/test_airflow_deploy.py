"""How Airflow is deployed, checked without starting it: the demo's environment and the compose services."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps import airflow_demo
from ledgerline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker")


def test_demo_airflow_uses_the_demo_mlflow_app_db_and_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path / "home", tracking_uri="http://127.0.0.1:5000")
    env = airflow_demo.airflow_env(settings)

    assert env["AIRFLOW_HOME"] == str(tmp_path / "home" / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "dags")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(f"sqlite:///{tmp_path / 'home' / 'airflow'}")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == "8080"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["LEDGERLINE_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert env["LEDGERLINE_APP_DB_URL"] == settings.resolved_app_db_url()
    assert env["LEDGERLINE_DATA_DIR"] == str(settings.resolved_data_dir())
    # a task rebuilding Settings from that environment gets the demo's settings back
    for name in [n for n in os.environ if n.startswith("LEDGERLINE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("LEDGERLINE_"):
            monkeypatch.setenv(name, value)
    rebuilt = Settings()
    assert rebuilt.resolved_app_db_url() == settings.resolved_app_db_url()
    assert rebuilt.resolved_data_dir() == settings.resolved_data_dir()
    assert rebuilt.families == settings.families and rebuilt.tracking_uri == settings.tracking_uri
    secret = env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(secret) >= 32 and airflow_demo.airflow_env(settings)["AIRFLOW__API_AUTH__JWT_SECRET"] == secret
    assert airflow_demo.password_file(settings).parent == tmp_path / "home" / "airflow"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_airflow_components_on_the_airflow_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    init = services["airflow-init"]
    assert init["command"] == ["airflow", "db", "migrate"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["command"][:2] == ["airflow", name.removeprefix("airflow-").replace("worker", "celery")]
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert svc["build"] == {"context": ".", "dockerfile": "infra/airflow/Dockerfile"}
        env = svc["environment"]
        conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert conn.startswith("postgresql+psycopg2://") and conn.endswith("@postgres:5432/airflow")
        assert env["LEDGERLINE_TRACKING_URI"] == "http://mlflow:5000"
        assert env["LEDGERLINE_APP_DB_URL"].endswith("@postgres:5432/ledgerline")
        assert str(env["AIRFLOW__API_AUTH__JWT_SECRET"]).startswith("${")
        assert "${POSTGRES_PASSWORD" in conn, "the password comes from the environment"
    assert services["airflow-worker"]["depends_on"]["mlflow"]["condition"] == "service_healthy"  # tasks run there
    assert "healthcheck" in services["airflow-api-server"]
    assert services["airflow-api-server"]["ports"] == ["127.0.0.1:${LEDGERLINE_AIRFLOW_PORT:-8080}:8080"]


def test_airflow_image_installs_the_locked_stack_and_copies_what_tasks_import() -> None:
    dockerfile = (ROOT / "infra" / "airflow" / "Dockerfile").read_text()
    assert "pip install -r requirements.lock" in dockerfile
    for package in ("ledgerline", "features", "expectations", "training", "monitoring", "dags"):
        assert re.search(rf"^COPY {package} ", dockerfile, flags=re.MULTILINE), package
    ignore = (ROOT / "infra" / "airflow" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "the repo-root build context must not send .venv, .ledgerline or .git"
