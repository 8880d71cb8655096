"""Fixtures for the serving tests: a credit model with two registered versions, serving
settings, the app running under a real uvicorn server in a thread, and a loopback TCP
proxy the tests can cut and restore (to take Postgres or the tracking server away)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

MODEL = "credit-serving"
API_KEY = "test-api-key-0f3a"
ADMIN_KEY = "test-admin-key-77c1"
HEADERS = {"X-API-Key": API_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ServedVersions:
    name: str
    v1: str
    v2: str | None
    settings: Any  # ledgerline.settings.Settings of the session

    def set_champion(self, version: str) -> None:
        from ledgerline.registry import CHAMPION, client

        client(self.settings).set_registered_model_alias(self.name, CHAMPION, version)


@pytest.fixture(scope="session")
def credit_v1(train_credit: Callable[..., Any]) -> ServedVersions:
    """``credit-serving`` v1, trained through the real pipeline and promoted to @champion."""
    trained = train_credit(MODEL)
    assert trained.champion == trained.version
    return ServedVersions(MODEL, trained.version, None, trained.settings)


@pytest.fixture(scope="session")
def credit_v1_v2(credit_v1: ServedVersions, train_credit: Callable[..., Any]) -> Iterator[ServedVersions]:
    """A second version of the same model (retrained on the next week's data); @champion stays on v1."""
    v2 = train_credit(MODEL, seed=43, logical_date="2026-01-12")
    versions = ServedVersions(MODEL, credit_v1.v1, v2.version, credit_v1.settings)
    versions.set_champion(versions.v1)
    yield versions
    versions.set_champion(versions.v1)


@pytest.fixture
def platform(credit_v1: ServedVersions, fresh_app_db_url: str, tmp_path: Any) -> Any:
    """The session's platform settings with a prediction log (app database) and home of this test's own."""
    return credit_v1.settings.model_copy(update={"app_db_url": fresh_app_db_url, "home": tmp_path / "home"})


def serving_settings(**overrides: Any) -> Any:
    from serving.settings import ServingSettings

    values: dict[str, Any] = {
        "models": [MODEL],
        "api_keys": [API_KEY, "second-key-for-rotation"],
        "admin_key": ADMIN_KEY,
        "poll_interval_seconds": 3600,
        "registry_timeout_seconds": 2,
        "log_flush_interval_seconds": 0.05,
        "feedback_wait_seconds": 0.5,
        "shutdown_flush_timeout_seconds": 20,
    }
    values.update(overrides)
    return ServingSettings(**values)


# --------------------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self, timeout: float = 120) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the serving app did not start")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 60) -> None:
        """Graceful: in-flight requests finish, then the lifespan shutdown flushes the log."""
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    @property
    def state(self) -> Any:
        return self.app.state.serving

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@pytest.fixture
def live_app() -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``live_app(serving_settings, platform)`` -> a started LiveServer, stopped after the test."""
    from serving.app import create_app

    servers: list[LiveServer] = []

    def start(settings: Any, platform: Any) -> LiveServer:
        server = LiveServer(create_app(settings, platform)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """A loopback TCP proxy to ``target``: ``cut()`` drops every connection and refuses new
    ones (the service is "down"), ``restore()`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepting = threading.Event()

    def start(self) -> TcpProxy:
        self.restore()
        return self

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._accepting.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        self._accepting.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while self._accepting.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._conns.discard(s)


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str], TcpProxy]]:
    """Factory: ``tcp_proxy("http://host:port" or a SQLAlchemy URL)`` -> a started proxy to it."""
    proxies: list[TcpProxy] = []

    def make(url: str) -> TcpProxy:
        parsed = urlparse(url)
        proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432).start()
        proxies.append(proxy)
        return proxy

    yield make
    for p in proxies:
        p.close()


def via_proxy(url: str, proxy: TcpProxy) -> str:
    """``url`` with its host:port replaced by the proxy's."""
    parsed = urlparse(url)
    netloc = parsed.netloc.rsplit("@", 1)
    hostport = f"127.0.0.1:{proxy.port}"
    new = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
    return parsed._replace(netloc=new).geturl()


def start_serve(
    env: dict[str, str], log: Any, args: tuple[str, ...] = ("--workers", "2", "--log-level", "info"),
    *, timeout: float = 180,
) -> tuple[Any, str]:
    """``ledgerline serve`` as a process in its own session, on a free port, writing to ``log``, once
    ``/ready`` answers 200: (the process, its URL). A process that dies or never gets ready is stopped
    and the test fails with the tail of its log."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    port = free_port()
    with Path(log).open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ledgerline"), "serve", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, Path(log).read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, Path(log).read_text()[-3000:]
            time.sleep(0.5)
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
        raise


def count_predictions(url: str, model: str | None = None) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = "SELECT count(*) FROM predictions" + (" WHERE model_name = :m" if model else "")
            return int(conn.execute(sa.text(q), {"m": model}).scalar_one())
    finally:
        engine.dispose()


def example_record(server: LiveServer) -> dict[str, Any]:
    with server.client() as c:
        r = c.get("/v1/models", headers=HEADERS)
        r.raise_for_status()
        return dict(r.json()["models"][MODEL]["example"])


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


@pytest.fixture(scope="session")
def sv() -> Any:
    """The helpers above for test modules (test files cannot import a conftest in importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        MODEL=MODEL,
        API_KEY=API_KEY,
        ADMIN_KEY=ADMIN_KEY,
        HEADERS=HEADERS,
        ADMIN=ADMIN,
        serving_settings=serving_settings,
        via_proxy=via_proxy,
        count_predictions=count_predictions,
        example_record=example_record,
        metric=metric,
        LiveServer=LiveServer,
        start_serve=start_serve,
    )
