"""Real-services test harness: Postgres databases, a moto S3 server and an ``mlflow server``.

Nothing here is autouse: a test starts services only by requesting a fixture.

Session fixtures
    pg_admin_url      maintenance URL of the local Postgres (env ``LEDGERLINE_TEST_PG_URL``)
    make_database     factory ``make_database(purpose) -> SQLAlchemy URL`` of a new, empty database;
                      every database it made is dropped at session end (``make_database.drop(url)``
                      drops one earlier)
    s3_server         moto in server mode, a separate process, with one bucket -> :class:`S3Server`
    mlflow_server     ``mlflow server`` on Postgres + ``s3://<bucket>/mlartifacts`` -> :class:`MlflowServer`
    app_db_url        one app database for the session
Function fixtures
    fresh_app_db_url  an app database of its own, dropped after the test
    settings          ``ledgerline.settings.Settings`` pointing at all of the above, with
                      ``MLFLOW_TRACKING_URI`` set to the test server and mlflow's globals reset afterwards
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import URL, make_url

from ledgerline.mlflow_server import (
    ServerStartError,
    log_tail,
    s3_env,
    start_process,
    start_server,
    stop_server,
    wait_for_http,
    wait_ready,
)

if TYPE_CHECKING:
    from ledgerline.settings import Settings

logger = logging.getLogger("ledgerline.tests.harness")

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DB_PREFIX = "ll_test_"
S3_BUCKET = "ledgerline-artifacts"
# Generous: a fresh Postgres database means MLflow runs all its migrations, and the
# CI machine has two cores shared with other test processes.
MLFLOW_START_TIMEOUT = float(os.environ.get("LEDGERLINE_TEST_MLFLOW_START_TIMEOUT", "300"))
MOTO_START_TIMEOUT = 60.0
PORT_ATTEMPTS = 3


# --------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_clash(log_path: Path) -> bool:
    return "address already in use" in log_tail(log_path, lines=200).lower()


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 API with one bucket; the credentials are dummies moto accepts."""

    endpoint_url: str
    bucket: str
    log_path: Path
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"
    startup_seconds: float = 0.0

    def env(self) -> dict[str, str]:
        """What an ``mlflow server`` with an ``s3://`` artifacts destination needs."""
        return s3_env(
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
        )

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``."""

    tracking_uri: str
    backend_store_uri: str
    artifacts_destination: str
    log_path: Path
    argv: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0


class DatabaseFactory:
    """Creates uniquely named Postgres databases and drops them again."""

    def __init__(self, admin_url: str) -> None:
        self._admin: URL = make_url(admin_url)
        self.created: list[str] = []

    def _connect(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(
            host=self._admin.host or "127.0.0.1",
            port=self._admin.port or 5432,
            user=self._admin.username or "postgres",
            password=self._admin.password,
            dbname=self._admin.database or "postgres",
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn

    def url_for(self, name: str) -> str:
        url = self._admin.set(drivername="postgresql+psycopg2", database=name)
        return url.render_as_string(hide_password=False)

    def check(self) -> None:
        conn = self._connect()
        conn.close()

    def __call__(self, purpose: str = "db") -> str:
        """Create ``ll_test_<purpose>_<random>`` and return its SQLAlchemy URL."""
        slug = re.sub(r"[^a-z0-9_]+", "_", purpose.lower()).strip("_")[:30] or "db"
        name = f"{TEST_DB_PREFIX}{slug}_{secrets.token_hex(4)}"
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.created.append(name)
        return self.url_for(name)

    def drop(self, url_or_name: str) -> None:
        """Terminate the database's connections and drop it."""
        name = make_url(url_or_name).database if "://" in url_or_name else url_or_name
        if not name or not name.startswith(TEST_DB_PREFIX):
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> list[str]:
        """Drop every database still on the list; return the names that could not be dropped."""
        failed = []
        for name in list(self.created):
            try:
                self.drop(name)
            except Exception:  # keep dropping the others
                logger.exception("could not drop test database %s", name)
                failed.append(name)
        return failed


# --------------------------------------------------------------------------- Postgres


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the maintenance database of the test Postgres server."""
    return os.environ.get("LEDGERLINE_TEST_PG_URL", DEFAULT_PG_ADMIN_URL)


@pytest.fixture(scope="session")
def make_database(pg_admin_url: str) -> Iterator[DatabaseFactory]:
    """Factory: ``make_database("purpose")`` -> URL of a new database, all dropped at session end."""
    factory = DatabaseFactory(pg_admin_url)
    try:
        factory.check()
    except Exception as exc:
        pytest.fail(f"cannot connect to Postgres at {pg_admin_url} (set LEDGERLINE_TEST_PG_URL): {exc}")
    yield factory
    failed = factory.drop_all()
    if failed:
        pytest.fail(f"test databases left behind: {', '.join(failed)}")


@pytest.fixture(scope="session")
def app_db_url(make_database: DatabaseFactory) -> str:
    """SQLAlchemy URL of an empty app database shared by the session."""
    return make_database("app")


@pytest.fixture
def fresh_app_db_url(make_database: DatabaseFactory) -> Iterator[str]:
    """SQLAlchemy URL of an empty app database for one test, dropped afterwards."""
    url = make_database("app")
    yield url
    make_database.drop(url)


# --------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto in server mode, as a separate process on a free loopback port, with one bucket."""
    log_dir = tmp_path_factory.mktemp("moto")
    proc: subprocess.Popen[bytes] | None = None
    server: S3Server | None = None
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        log_path = log_dir / f"moto-{port}.log"
        started = time.monotonic()
        proc = start_process(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            log_path=log_path,
        )
        try:
            wait_for_http(
                f"http://127.0.0.1:{port}/moto-api/",
                timeout=MOTO_START_TIMEOUT,
                proc=proc,
                log_path=log_path,
                name="moto server",
            )
        except ServerStartError:
            stop_server(proc)
            if attempt < PORT_ATTEMPTS and _port_clash(log_path):
                continue
            raise
        server = S3Server(
            endpoint_url=f"http://127.0.0.1:{port}",
            bucket=S3_BUCKET,
            log_path=log_path,
            startup_seconds=time.monotonic() - started,
        )
        break
    assert proc is not None and server is not None
    logger.info("moto server %s ready after %.1fs", server.endpoint_url, server.startup_seconds)
    try:
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        stop_server(proc)


# --------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="session")
def mlflow_server(
    make_database: DatabaseFactory, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """A real ``mlflow server``: fresh Postgres backend, artifacts proxied to the moto bucket."""
    backend_store_uri = make_database("mlflow")
    artifacts_destination = f"s3://{s3_server.bucket}/mlartifacts"
    log_dir = tmp_path_factory.mktemp("mlflow-server")
    env = {
        **s3_server.env(),
        # The job runner (7 huey consumers) serves MLflow's GenAI jobs, which Ledgerline does
        # not use; compose turns it off too.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        log_path = log_dir / f"mlflow-{port}.log"
        tracking_uri = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        proc = start_server(
            backend_store_uri=backend_store_uri,
            artifacts_destination=artifacts_destination,
            port=port,
            env=env,
            log_path=log_path,
        )
        try:
            wait_ready(tracking_uri, timeout=MLFLOW_START_TIMEOUT, proc=proc, log_path=log_path)
        except ServerStartError:
            stop_server(proc)
            if attempt < PORT_ATTEMPTS and _port_clash(log_path):
                continue
            raise
        break
    server = MlflowServer(
        tracking_uri=tracking_uri,
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        log_path=log_path,
        argv=list(proc.args),  # type: ignore[arg-type]
        startup_seconds=time.monotonic() - started,
    )
    logger.info("mlflow server %s ready after %.1fs", tracking_uri, server.startup_seconds)
    try:
        yield server
    finally:
        stop_server(proc)


# --------------------------------------------------------------------------- Settings

#: where the tests' anomaly champions get their customer profiles filled at promotion (never the machine's db 0)
TEST_PROFILE_REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture(scope="session")
def anomaly_profile_settings() -> Iterator[dict[str, str]]:
    """The transaction-anomaly family's settings of the test Settings: profiles in Redis db 12 under a key
    prefix of this session's own, deleted at the end (nothing happens when Redis is not running)."""
    prefix = f"ll-test-{secrets.token_hex(4)}:"
    yield {"profile_store_url": TEST_PROFILE_REDIS_URL, "profile_key_prefix": prefix}
    try:
        import redis

        r = redis.Redis.from_url(TEST_PROFILE_REDIS_URL, socket_connect_timeout=1)
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
        r.close()
    except Exception:  # Redis not running: nothing was written
        pass


@pytest.fixture
def settings(
    mlflow_server: MlflowServer,
    s3_server: S3Server,
    app_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    anomaly_profile_settings: dict[str, str],
) -> Iterator[Settings]:
    """Settings for the running services, built from explicit values (no ambient LEDGERLINE_* env)."""
    from ledgerline.settings import Settings

    for name in list(os.environ):
        if name.startswith("LEDGERLINE_") and name != "LEDGERLINE_TEST_PG_URL":
            monkeypatch.delenv(name)
    for name in (
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_RUN_ID",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    # Dummy credentials: nothing in a test can reach real AWS with someone's real keys.
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    env_before = {name for name in os.environ if name.startswith("MLFLOW_")}

    yield Settings(  # type: ignore[call-arg]  # pydantic fields with defaults; no mypy plugin
        tracking_uri=mlflow_server.tracking_uri,
        backend_store_uri=mlflow_server.backend_store_uri,
        artifacts_destination=mlflow_server.artifacts_destination,
        s3_endpoint_url=s3_server.endpoint_url,
        app_db_url=app_db_url,
        data_dir=tmp_path / "data",
        home=tmp_path / "home",
        families={"transaction-anomaly": anomaly_profile_settings},
    )

    # mlflow keeps the tracking/registry URI and the active run in module globals and
    # writes MLFLOW_* env vars directly (not through monkeypatch): reset both.
    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    for name in [n for n in os.environ if n.startswith("MLFLOW_") and n not in env_before]:
        os.environ.pop(name, None)


# --------------------------------------------------------------------------- Trained models


@dataclass
class TrainedModel:
    settings: Settings
    model_name: str
    version: str
    run_id: str
    snapshot_uri: str
    champion: str | None
    decision_passed: bool


@pytest.fixture(scope="session")
def session_settings(
    mlflow_server: MlflowServer,
    s3_server: S3Server,
    make_database: DatabaseFactory,
    tmp_path_factory: pytest.TempPathFactory,
    anomaly_profile_settings: dict[str, str],
) -> Iterator[Settings]:
    """Session-wide Settings on the test services (own app database, data and home folders)."""
    from ledgerline.settings import Settings

    root = tmp_path_factory.mktemp("session-ledgerline")
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("LEDGERLINE_") and name != "LEDGERLINE_TEST_PG_URL":
            mp.delenv(name)
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    for name, value in s3_server.env().items():
        mp.setenv(name, value)
    try:
        yield Settings(  # type: ignore[call-arg]
            tracking_uri=mlflow_server.tracking_uri,
            backend_store_uri=mlflow_server.backend_store_uri,
            artifacts_destination=mlflow_server.artifacts_destination,
            s3_endpoint_url=s3_server.endpoint_url,
            app_db_url=make_database("session_app"),
            data_dir=root / "data",
            home=root / "home",
            # 6,000-row test models have holdout AUC noise of about +-0.02: a retrain on the
            # same distribution must not be refused by chance (the gate tests set their own).
            families={"credit-risk": {"gate": {"min_roc_auc": 0.65, "tolerance": 0.05}},
                      "transaction-anomaly": anomaly_profile_settings},
        )
    finally:
        mp.undo()


def _trainer(settings: Settings, family: str, **defaults: Any) -> Callable[..., TrainedModel]:
    """``train(model_name, **overrides)`` through the real pipeline for ``family``; results are cached."""
    cache: dict[tuple[object, ...], TrainedModel] = {}

    def train(model_name: str, **overrides: Any) -> TrainedModel:
        args = {**defaults, **overrides}
        key = (model_name, *sorted((k, repr(v)) for k, v in args.items()))
        if key not in cache:
            from training.pipeline import TrainRequest, run_training

            result = run_training(settings, TrainRequest(family=family, model_name=model_name, **args))
            cache[key] = TrainedModel(
                settings=settings,
                model_name=model_name,
                version=result.version,
                run_id=result.run_id,
                snapshot_uri=result.snapshot_uri,
                champion=result.champion,
                decision_passed=result.decision.passed,
            )
        return cache[key]

    return train


@pytest.fixture(scope="session")
def train_credit(session_settings: Settings) -> Callable[..., TrainedModel]:
    """Train, register and gate a credit model through the real pipeline; results are cached.

    ``train_credit("name")`` promotes v1 to @champion on first use; another seed or
    logical date registers the next version and gates it against the champion.
    """
    # XGBoost (the serving fast path the tests exercise; on generated data the scorecard would win the
    # cross-validation) with a 2-fold threshold search to keep the fixture quick
    return _trainer(session_settings, "credit-risk", rows=6000, seed=42, logical_date="2026-01-05", trigger="manual",
                    params={"model_choice": "xgboost", "cv_folds": 2})


@pytest.fixture(scope="session")
def train_anomaly(session_settings: Settings) -> Callable[..., TrainedModel]:
    """Train, register and gate a transaction-anomaly model on generated transactions; cached."""
    return _trainer(session_settings, "transaction-anomaly", rows=8000, seed=42, logical_date="2026-01-05",
                    params={"n_estimators": 100})


@dataclass
class TrainedForecast:
    settings: Settings
    model_name: str
    data: Path  # the CSV it was trained on
    env: dict[str, str]  # LEDGERLINE_* for CLI calls against the same services
    version: str


@pytest.fixture(scope="session")
def trained_forecast(session_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> TrainedForecast:
    """``ledgerline train spending-forecast --data CSV ...`` once per session: 16 monthly series, seasonal naive
    and Theta in one process (Prophet and the worker pool are covered by tests/unit/forecast)."""
    from apps.cli import main
    from families.spending_forecast.data import generate_spending
    from ledgerline.registry import CHAMPION, alias_version, client

    root = tmp_path_factory.mktemp("forecast")
    data = root / "spending.csv"
    generate_spending(16, seed=21, months=48).to_csv(data, index=False)
    env = {
        "LEDGERLINE_TRACKING_URI": session_settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": session_settings.resolved_app_db_url(),
        "LEDGERLINE_HOME": str(session_settings.home),
        "LEDGERLINE_DATA_DIR": str(session_settings.resolved_data_dir()),
    }
    name = "it-forecast"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        rc = main(["train", "spending-forecast", "--data", str(data), "--series-column", "series_id",
                   "--time-column", "ds", "--target", "y", "--freq", "MS", "--horizon", "12", "--model-name", name,
                   "--param", "models=snaive,theta", "--param", "workers=1", "--logical-date", "2026-11-01"])
    assert rc == 0
    version = alias_version(client(session_settings), name, CHAMPION)
    assert version is not None, "the forecast model was not promoted"
    return TrainedForecast(session_settings, name, data, env, version)
