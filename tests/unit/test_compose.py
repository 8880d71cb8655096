"""docker-compose.yml and infra/ agree with the code and the lock file (no services started)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ledgerline.mlflow_server import MLFLOW_CLI_PREFIX, server_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "mlflow" / "Dockerfile"
INIT_SQL = ROOT / "infra" / "postgres" / "init.sql"
LOCK = ROOT / "requirements.lock"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def mlflow_command(compose: dict[str, Any]) -> list[str]:
    command = compose["services"]["mlflow"]["command"]
    assert isinstance(command, list), "write the mlflow command as a YAML list"
    assert all(isinstance(part, str) for part in command), f"quote numbers so every part is a string: {command}"
    return command


def after_server(argv: list[str]) -> list[str]:
    """The arguments after the ``server`` subcommand (drops ``mlflow`` / ``python -m mlflow``)."""
    assert "server" in argv, argv
    return argv[argv.index("server") + 1 :]


def options(args: list[str]) -> dict[str, str | None]:
    """``--name value`` pairs; a flag followed by another option maps to None."""
    parsed: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        name = args[i]
        assert name.startswith("--"), f"unexpected positional argument {name!r} in {args}"
        assert name not in parsed, f"{name} given twice"
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            parsed[name] = args[i + 1]
            i += 2
        else:
            parsed[name] = None
            i += 1
    return parsed


def lock_versions() -> dict[str, str]:
    versions = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            versions[match.group(1).lower()] = match.group(2)
    return versions


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "mlflow"} <= set(services)
    assert services["postgres"]["image"] == "postgres:16"
    mlflow = services["mlflow"]
    assert mlflow["build"]["context"] == "./infra/mlflow"
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mlflow["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("postgres", "minio", "mlflow"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_mlflow_command_is_exactly_server_command(mlflow_command: list[str]) -> None:
    assert mlflow_command[:2] == ["mlflow", "server"]
    compose_opts = options(after_server(mlflow_command))
    expected = server_command(
        backend_store_uri=str(compose_opts.get("--backend-store-uri")),
        artifacts_destination=str(compose_opts.get("--artifacts-destination")),
        host="0.0.0.0",
        port=5000,
        workers=int(compose_opts.get("--workers") or 1),
        allowed_hosts=compose_opts.get("--allowed-hosts"),
    )
    assert expected[: len(MLFLOW_CLI_PREFIX)] == list(MLFLOW_CLI_PREFIX)
    # Same options, same order, same values: adding or dropping one on either side fails.
    assert after_server(mlflow_command) == after_server(expected)


def test_server_command_options_are_the_documented_set() -> None:
    args = after_server(
        server_command(backend_store_uri="postgresql+psycopg2://u@h/db", artifacts_destination="s3://b/p")
    )
    assert list(options(args)) == [
        "--backend-store-uri",
        "--artifacts-destination",
        "--serve-artifacts",
        "--host",
        "--port",
        "--workers",
    ]
    with_hosts = after_server(
        server_command(backend_store_uri="x", artifacts_destination="y", allowed_hosts="mlflow:*,localhost:*")
    )
    assert with_hosts[-2:] == ["--allowed-hosts", "mlflow:*,localhost:*"]


def test_mlflow_command_targets_the_compose_services(compose: dict[str, Any], mlflow_command: list[str]) -> None:
    opts = options(after_server(mlflow_command))
    backend = str(opts["--backend-store-uri"])
    # psycopg2 explicitly: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
    assert backend.startswith("postgresql+psycopg2://")
    assert backend.split("@", 1)[1] == "postgres:5432/mlflow"
    assert ":" not in backend.split("://", 1)[1].split("@", 1)[0], "no password in the command line"

    bucket = compose["services"]["minio-init"]["environment"]["ARTIFACT_BUCKET"]
    assert opts["--artifacts-destination"] == f"s3://{bucket}/mlartifacts"
    assert "--serve-artifacts" in opts and opts["--serve-artifacts"] is None
    assert opts["--host"] == "0.0.0.0"
    assert opts["--port"] == "5000"

    allowed = str(opts.get("--allowed-hosts") or "").split(",")
    assert "mlflow:*" in allowed or "mlflow:5000" in allowed, "other containers reach it as mlflow:5000"
    assert "localhost:*" in allowed, "--allowed-hosts replaces the defaults; keep localhost for the published port"


def test_mlflow_service_environment(compose: dict[str, Any]) -> None:
    env = compose["services"]["mlflow"]["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"):
        assert str(env[name]).startswith("${"), f"{name} must come from the environment"
    assert env["AWS_DEFAULT_REGION"]


def test_dockerfile_pins_match_the_lock() -> None:
    pins = dict(re.findall(r"\b([A-Za-z0-9_.\-]+)==([0-9][^\s\\]*)", DOCKERFILE.read_text()))
    assert "mlflow" in pins and "psycopg2-binary" in pins and "boto3" in pins
    locked = lock_versions()
    assert pins["mlflow"] == locked["mlflow"]
    for name, version in pins.items():
        assert locked.get(name.lower()) == version, (
            f"{name}=={version} in the Dockerfile, {locked.get(name.lower())} in the lock"
        )


def test_init_sql_creates_the_databases() -> None:
    created = re.findall(r"CREATE DATABASE\s+(\w+)", INIT_SQL.read_text(), flags=re.IGNORECASE)
    assert sorted(created) == ["airflow", "ledgerline", "mlflow"]


def test_redis_is_the_celery_broker_of_airflow(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:")
    assert "healthcheck" in redis
    assert redis["ports"] == ["127.0.0.1:${LEDGERLINE_REDIS_PORT:-6379}:6379"], "published on loopback only"
    assert "redis-data" in compose["volumes"]


def test_airflow_runs_the_celery_executor_the_tests_run(compose: dict[str, Any]) -> None:
    from apps.airflow_demo import celery_env

    env = compose["x-airflow-common"]["environment"]
    broker = env["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://redis:6379/"), "the broker is the compose redis service"
    # the same executor settings tests/dags/test_scheduler.py starts (only the URLs differ)
    expected = celery_env(broker, env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert {k: str(env[k]) for k in expected} == expected
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres:5432/airflow")


def test_celery_workers_run_the_tasks_with_what_tasks_need(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["airflow-worker"]
    assert worker["command"] == ["airflow", "celery", "worker"]
    assert worker["build"] == {"context": ".", "dockerfile": "infra/airflow/Dockerfile"}
    for need, condition in (("airflow-init", "service_completed_successfully"), ("redis", "service_healthy"),
                            ("mlflow", "service_healthy")):
        assert worker["depends_on"][need]["condition"] == condition, need
    # snapshots and chunk parts written by one task are read by another, maybe on another worker
    assert "ledgerline-data:/var/lib/ledgerline" in worker["volumes"]
    assert worker["environment"]["LEDGERLINE_DATA_DIR"] == "/var/lib/ledgerline/data"
    assert services["airflow-scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in worker, "workers take tasks from the broker; nothing connects to them"
