"""Airflow for ``make demo``: ``airflow standalone`` on 127.0.0.1:8080 with Ledgerline's DAGs.

It runs in its own process group with ``AIRFLOW_HOME`` under ``settings.home/airflow``
(SQLite metadata DB, logs, the generated admin password), the same MLflow tracking URI,
app database and snapshot folder as the rest of the demo, and the DAGs unpaused (their
first scheduled runs are the next weekly/daily slots, so nothing heavy starts at once).
A second ``make demo`` reuses a running instance; ``ledgerline down`` stops it.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ledgerline.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
#: The repo's DAG folder (an editable install); LEDGERLINE_DAGS_FOLDER points elsewhere.
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


def airflow_home(settings: Settings) -> Path:
    return settings.home.resolve() / "airflow"


def password_file(settings: Settings) -> Path:
    """Where the simple auth manager of ``airflow standalone`` writes the generated admin password."""
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def ui_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def healthy(port: int = DEFAULT_PORT) -> bool:
    """True when an Airflow api-server answers its health endpoint on ``port``."""
    try:
        with urllib.request.urlopen(f"{ui_url(port)}/api/v2/monitor/health", timeout=3) as resp:
            return bool(resp.status == 200 and b"metadatabase" in resp.read())
    except (urllib.error.URLError, OSError):
        return False


def _jwt_secret(home: Path) -> str:
    """A per-install secret shared by the api-server and the task workers (kept across restarts)."""
    path = home / "jwt_secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(settings: Settings, *, port: int = DEFAULT_PORT) -> dict[str, str]:
    """The environment of the Airflow processes: Ledgerline's settings plus Airflow's own config."""
    from apps.orchestration import settings_env

    home = airflow_home(settings)
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_HOME"))}
    env.update(settings_env(settings))
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("LEDGERLINE_DAGS_FOLDER", str(DAGS_FOLDER)),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{ui_url(port)}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": _jwt_secret(home),
            # standalone starts its components as `airflow ...` from PATH: this interpreter's
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def celery_env(broker_url: str, metadata_db_url: str) -> dict[str, str]:
    """Airflow's CeleryExecutor settings, as docker-compose.yml and the scheduler test use them.

    The scheduler sends task instances to the Redis ``broker_url``; ``airflow celery worker``
    processes run them and report to Celery's result backend, a table in the Airflow metadata
    database (``db+`` + its URL), so no second Redis database is needed. A worker reserves only
    the tasks it runs (prefetch multiplier 1): the chunks of a mapped training stay on the broker
    for the other workers. Workers import what tasks import once, when they start
    (:mod:`apps.celery_config`). (tests/unit/test_compose.py keeps compose equal to this.)
    """
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "apps.celery_config.CELERY_CONFIG",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_db_url}",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    }


def ensure_airflow(settings: Settings, *, port: int = DEFAULT_PORT) -> list[str]:
    """Start ``airflow standalone`` unless one answers on ``port``; return the lines telling how to log in.

    Does not wait for Airflow to be ready (its first start migrates a fresh SQLite DB, about
    a minute): the lines say where to look.
    """
    from apps.demo import _write_pid
    from apps.orchestration import MONITORING_DAG_ID, retrain_dag_id
    from ledgerline.families import FAMILIES
    from ledgerline.mlflow_server import start_process

    home = airflow_home(settings)
    log = settings.home.resolve() / "logs" / "airflow.log"
    if healthy(port):
        state = "already running; reused"
    else:
        home.mkdir(parents=True, exist_ok=True)
        proc = start_process([str(Path(sys.executable).parent / "airflow"), "standalone"],
                             env=airflow_env(settings, port=port), log_path=log)
        _write_pid(settings, "airflow", proc.pid)
        logger.info("started airflow standalone (pid %s, log %s)", proc.pid, log)
        state = "starting (ready in about a minute)"
    return [
        f"  Airflow UI           {ui_url(port)}   ({state}; log: {log})",
        f"  Airflow login        user admin, password in {password_file(settings)}",
        f"  Airflow DAGs         {', '.join(retrain_dag_id(f) for f in FAMILIES)} (weekly), "
        f"{MONITORING_DAG_ID} (daily); unpaused; `make down` stops Airflow too",
    ]
