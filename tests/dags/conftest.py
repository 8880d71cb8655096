"""Airflow for the DAG tests, always in child processes.

Airflow reads AIRFLOW_HOME and its metadata DB URL when first imported and keeps global
state, so these tests never import it: ``airflow_runner.py`` (parse the DAG folder, or
``dag.test()`` one DAG) and the ``airflow`` CLI run with an environment built here.

Session fixtures
    airflow_base_env   environment of every Airflow child: a temporary AIRFLOW_HOME, the repo's
                       dags/ folder, no examples, no ambient LEDGERLINE_*/AIRFLOW_* variables,
                       fast retries (1 retry after 1 s)
    dag_structure      the parsed DAG folder as JSON (import errors, tasks, retries, tags, params)
    sqlite_airflow     base env + a SQLite metadata DB, migrated once (what ``dag.test()`` needs)
    dag_runner         ``dag_runner.run(dag_id, settings, conf=..., logical_date=...)``: ``dag.test()``
                       in a child process on that SQLite DB, with the test's Ledgerline settings
    airflow_env_for    ``airflow_env_for(base_env, settings, **extra)``: an Airflow child's environment
    airflow_cli        ``airflow_cli(argv, env, log, timeout)``: a command run to completion
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ledgerline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "dags"
RUNNER = Path(__file__).resolve().parent / "airflow_runner.py"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
DAG_TEST_TIMEOUT = 420


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def run_logged(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
    """Run ``argv`` to completion, output to ``log``; fail the test with the log tail if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(argv[:4])} ... timed out after {timeout:.0f}s\n{log_tail(log)}")
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv[:4])} ... exited {proc.returncode}\n--- {log} ---\n{log_tail(log)}")


@pytest.fixture(scope="session")
def airflow_base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEDGERLINE_", "AIRFLOW_", "AIRFLOW__", "MLFLOW_")) and not k.startswith("PYTEST")
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "LEDGERLINE_AIRFLOW_RETRIES": "1",
            "LEDGERLINE_AIRFLOW_RETRY_DELAY_SECONDS": "1",
        }
    )
    return env


def run_runner(env: dict[str, str], args: list[str], log: Path, timeout: float = DAG_TEST_TIMEOUT) -> dict[str, Any]:
    out = log.with_suffix(".json")
    run_logged([sys.executable, str(RUNNER), *args, "--out", str(out)], env, log, timeout)
    result: dict[str, Any] = json.loads(out.read_text())
    result["log"] = str(log)
    return result


@pytest.fixture(scope="session")
def dag_structure(airflow_base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The DAG folder as Airflow parses it, with the default (production) retry settings."""
    env = {k: v for k, v in airflow_base_env.items() if not k.startswith("LEDGERLINE_AIRFLOW_RETR")}
    return run_runner(env, ["inspect"], tmp_path_factory.mktemp("inspect") / "inspect.log", timeout=180)


@pytest.fixture(scope="session")
def sqlite_airflow(airflow_base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Base env with a SQLite metadata DB that ``airflow db migrate`` has created."""
    home = Path(airflow_base_env["AIRFLOW_HOME"])
    env = {**airflow_base_env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
    run_logged([AIRFLOW, "db", "migrate"], env, home / "logs" / "db-migrate.log", timeout=300)
    return env


class DagRunner:
    """Runs ``dag.test()`` in child processes against the session's SQLite metadata DB."""

    def __init__(self, base_env: dict[str, str], log_dir: Path) -> None:
        self.base_env = base_env
        self.log_dir = log_dir

    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        """The child's environment for ``settings`` (test services, S3 credentials included)."""
        return airflow_env(self.base_env, settings, **extra)

    def run(
        self, dag_id: str, settings: Settings, *, conf: dict[str, Any], logical_date: datetime, **extra_env: str
    ) -> dict[str, Any]:
        """``dag.test()`` of ``dag_id`` -> run state, task states and every DAG run in the metadata DB."""
        log = self.log_dir / f"{dag_id}-{logical_date:%Y%m%dT%H%M%S}-{len(list(self.log_dir.glob('*.log')))}.log"
        args = ["test", dag_id, "--conf", json.dumps(conf), "--logical-date", logical_date.isoformat()]
        return run_runner(self.env(settings, **extra_env), args, log)

    @staticmethod
    def states(result: dict[str, Any]) -> dict[str, list[str | None]]:
        """task_id -> the states of its task instances (one per map index)."""
        return {task: [ti["state"] for ti in tis] for task, tis in result["tasks"].items()}


def airflow_env(base: dict[str, str], settings: Settings, **extra: str) -> dict[str, str]:
    """An Airflow child's environment for ``settings`` (test services, S3 credentials included)."""
    from apps.orchestration import settings_env

    env = {**base, **settings_env(settings), **extra}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        if name in os.environ:
            env[name] = os.environ[name]
    if settings.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env


@pytest.fixture(scope="session")
def dag_runner(sqlite_airflow: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> DagRunner:
    return DagRunner(sqlite_airflow, tmp_path_factory.mktemp("dag-test-logs"))


@pytest.fixture(scope="session")
def airflow_env_for() -> Any:
    """``airflow_env_for(base_env, settings, **extra)``: an Airflow child's environment for ``settings``."""
    return airflow_env


@pytest.fixture(scope="session")
def airflow_cli() -> Any:
    """``airflow_cli(argv, env, log, timeout)``: run a command to completion or fail with its log tail."""
    return run_logged
