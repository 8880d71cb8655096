"""The registry misbehaving without going away: a tracking server whose database is down
answers /health but cannot resolve @champion. Serving must notice within its timeouts,
answer /admin/reload within a bound, keep serving, and say so in /ready. And a rollback
reaches the running API at once when the CLI knows where it is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ledgerline.mlflow_server import start_server, stop_server, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied_tracking_server(
    credit_v1: Any, mlflow_server: Any, s3_server: Any, tcp_proxy: Any, tmp_path: Any
) -> Iterator[tuple[str, Any]]:
    """A second ``mlflow server`` on the session's registry database, reached through a proxy we can cut."""
    from tests.integration.serving.conftest import free_port, via_proxy

    db_proxy = tcp_proxy(mlflow_server.backend_store_uri)
    port = free_port()
    proc = start_server(
        backend_store_uri=via_proxy(mlflow_server.backend_store_uri, db_proxy),
        artifacts_destination=mlflow_server.artifacts_destination,
        port=port,
        env={**s3_server.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log_path=tmp_path / "mlflow.log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=180, proc=proc, log_path=tmp_path / "mlflow.log")
        yield f"http://127.0.0.1:{port}", db_proxy
    finally:
        stop_server(proc)


def test_admin_reload_answers_within_a_bound_and_ready_says_unreachable_when_the_registry_database_is_down(
    credit_v1: Any, proxied_tracking_server: tuple[str, Any], platform: Any, live_app: Any, sv: Any
) -> None:
    tracking_uri, db_proxy = proxied_tracking_server
    via = platform.model_copy(update={"tracking_uri": tracking_uri, "registry_uri": None})
    server = live_app(sv.serving_settings(registry_timeout_seconds=2, reload_wait_seconds=4), via)
    record = sv.example_record(server)
    with server.client() as c:
        ready = c.get("/ready").json()
        assert ready["ready"] is True and ready["registry"]["reachable"] is True
        details = c.get("/v1/models", headers=sv.HEADERS).json()["models"][sv.MODEL]["details"]
        assert details["reason_code_path"] in ("treeshap_cells", "treeshap_leaves")  # fast path after a (re)start

        db_proxy.cut()
        assert httpx.get(tracking_uri + "/health", timeout=5).status_code == 200  # the server itself still answers
        started = time.monotonic()
        reload = c.post("/admin/reload", headers=sv.ADMIN)
        took = time.monotonic() - started
        assert took < 10, f"/admin/reload took {took:.1f}s with the registry database down"
        assert reload.status_code in (202, 503), reload.text
        if reload.status_code == 503:
            assert "registry" in reload.json()["detail"]

        deadline = time.monotonic() + 30
        while c.get("/ready").json()["registry"]["reachable"] is not False:
            assert time.monotonic() < deadline, "/ready kept saying the registry is reachable"
            time.sleep(0.5)
        ready = c.get("/ready")
        assert ready.status_code == 200  # the loaded model keeps serving
        assert ready.json()["registry"]["last_error"]
        answer = c.post(f"/v1/models/{sv.MODEL}/predict", json=record, headers=sv.HEADERS)
        assert answer.status_code == 200 and answer.json()["predictions"][0]["version"] == credit_v1.v1

        db_proxy.restore()
        deadline = time.monotonic() + 60
        while True:
            r = c.post("/admin/reload", headers=sv.ADMIN)
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, f"the registry did not come back: {r.status_code} {r.text}"
            time.sleep(1)
        assert c.get("/ready").json()["registry"]["reachable"] is True


def test_a_rollback_from_the_cli_reaches_the_running_api_at_once(
    credit_v1_v2: Any, platform: Any, live_app: Any, sv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps import cli

    v1, v2 = credit_v1_v2.v1, credit_v1_v2.v2
    server = live_app(sv.serving_settings(poll_interval_seconds=3600), platform)  # the poll alone would take an hour
    try:
        with server.client() as c:
            assert c.get("/version").json()["models"][sv.MODEL] == v1
            credit_v1_v2.set_champion(v2)  # what `ledgerline rollback` / promotion does to the alias
            monkeypatch.setenv("LEDGERLINE_SERVING_URL", server.url)
            monkeypatch.setenv("LEDGERLINE_SERVING_ADMIN_KEY", sv.ADMIN_KEY)
            cli._tell_serving_api()  # answers 200 when loaded within reload_wait_seconds, else 202 and loads on
            deadline = time.monotonic() + 60  # far below the hour-long poll: the CLI's call did it
            while c.get("/version").json()["models"][sv.MODEL] != v2:
                assert time.monotonic() < deadline, "the API did not load the rolled-back champion"
                time.sleep(0.2)
    finally:
        credit_v1_v2.set_champion(v1)


def test_the_watcher_follows_a_moved_champion_within_its_poll(
    credit_v1_v2: Any, platform: Any, live_app: Any, sv: Any
) -> None:
    v1, v2 = credit_v1_v2.v1, credit_v1_v2.v2
    server = live_app(sv.serving_settings(poll_interval_seconds=1), platform)
    try:
        with server.client() as c:
            assert c.get("/version").json()["models"][sv.MODEL] == v1
            credit_v1_v2.set_champion(v2)
            deadline = time.monotonic() + 30
            while c.get("/version").json()["models"][sv.MODEL] != v2:
                assert time.monotonic() < deadline, "the watcher did not follow @champion"
                time.sleep(0.2)
    finally:
        credit_v1_v2.set_champion(v1)
