"""Serving when its neighbours fail: the app database goes away (rows are buffered, then written;
a full buffer says so), the tracking server goes away (the loaded model keeps serving)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def predict(c: httpx.Client, sv: Any, body: Any) -> httpx.Response:
    return c.post(f"/v1/models/{sv.MODEL}/predict", json=body, headers=sv.HEADERS)


def test_predictions_made_while_the_database_is_away_are_buffered_then_written(
    platform: Any, fresh_app_db_url: str, tcp_proxy: Any, live_app: Any, sv: Any
) -> None:
    proxy = tcp_proxy(fresh_app_db_url)
    platform = platform.model_copy(update={"app_db_url": sv.via_proxy(fresh_app_db_url, proxy)})
    server = live_app(sv.serving_settings(log_retry_max_seconds=0.3), platform)
    record = sv.example_record(server)
    with server.client() as c:
        assert predict(c, sv, record).status_code == 200
        assert server.state.log.flush(timeout=20)
        proxy.cut()  # the database is gone
        answered = 0
        for i in range(30):
            r = predict(c, sv, record if i % 3 else [record] * 4)
            assert r.status_code == 200, r.text  # serving goes on
            answered += len(r.json()["predictions"])
        wait_for(lambda: c.get("/ready").json()["prediction_log"]["database_available"] is False, what="outage noticed")
        ready = c.get("/ready").json()
        assert ready["ready"] is True and ready["prediction_log"]["pending_rows"] == answered
        assert ready["prediction_log"]["last_error"]
        metrics = c.get("/metrics").text
        assert sv.metric(metrics, "ledgerline_serving_log_database_up") == 0
        assert sv.metric(metrics, "ledgerline_serving_log_queue_rows") == answered
        assert sv.metric(metrics, "ledgerline_serving_log_write_failures_total") >= 1
        assert sv.count_predictions(fresh_app_db_url) == 1
        proxy.restore()  # back
        wait_for(lambda: server.state.log.pending_rows == 0, what="buffer drained")
        assert sv.count_predictions(fresh_app_db_url) == answered + 1
        assert sv.metric(c.get("/metrics").text, "ledgerline_serving_log_database_up") == 1


def test_a_full_buffer_rejects_predictions_and_says_so_in_metrics_until_the_database_returns(
    platform: Any, fresh_app_db_url: str, tcp_proxy: Any, live_app: Any, sv: Any
) -> None:
    proxy = tcp_proxy(fresh_app_db_url)
    platform = platform.model_copy(update={"app_db_url": sv.via_proxy(fresh_app_db_url, proxy)})
    server = live_app(sv.serving_settings(log_buffer_rows=5, log_retry_max_seconds=0.3), platform)
    record = sv.example_record(server)
    proxy.cut()
    with server.client() as c:
        assert all(predict(c, sv, record).status_code == 200 for _ in range(5))
        refused = predict(c, sv, record)
        assert refused.status_code == 503
        assert "buffer is full" in refused.json()["detail"] and refused.headers["retry-after"]
        metrics = c.get("/metrics").text
        assert sv.metric(metrics, "ledgerline_serving_log_buffer_full") == 1
        assert sv.metric(metrics, "ledgerline_serving_log_refused_rows_total", action="rejected") == 1
        assert sv.metric(metrics, "ledgerline_serving_log_queue_rows") == 5
        assert sv.metric(metrics, "ledgerline_serving_errors_total", kind="LogBufferFull") == 1
        assert c.get("/ready").json()["prediction_log"]["buffer_full"] is True
        proxy.restore()
        wait_for(lambda: server.state.log.pending_rows == 0, what="buffer drained")
        assert sv.count_predictions(fresh_app_db_url) == 5  # every answered prediction, none of the refused
        assert predict(c, sv, record).status_code == 200
        assert sv.metric(c.get("/metrics").text, "ledgerline_serving_log_buffer_full") == 0
        assert server.state.log.flush(timeout=20)


def test_an_unreachable_tracking_server_leaves_the_loaded_model_serving_and_shows_in_ready_and_metrics(
    credit_v1: Any, mlflow_server: Any, platform: Any, tcp_proxy: Any, live_app: Any, sv: Any
) -> None:
    proxy = tcp_proxy(mlflow_server.tracking_uri)
    via = platform.model_copy(update={"tracking_uri": f"http://127.0.0.1:{proxy.port}"})
    server = live_app(sv.serving_settings(), via)
    record = sv.example_record(server)
    with server.client() as c:
        proxy.cut()
        reload = c.post("/admin/reload", headers=sv.ADMIN)
        assert reload.status_code == 503 and "unreachable" in reload.json()["detail"]
        answer = predict(c, sv, record)
        assert answer.status_code == 200 and answer.json()["predictions"][0]["version"] == credit_v1.v1
        ready = c.get("/ready")
        assert ready.status_code == 200
        registry = ready.json()["registry"]
        assert registry["reachable"] is False and registry["unreachable_since"] and registry["last_error"]
        metrics = c.get("/metrics").text
        assert sv.metric(metrics, "ledgerline_serving_registry_up") == 0
        assert sv.metric(metrics, "ledgerline_serving_registry_errors_total") >= 1
        proxy.restore()
        assert c.post("/admin/reload", headers=sv.ADMIN).status_code == 200
        assert c.get("/ready").json()["registry"]["reachable"] is True
        assert sv.metric(c.get("/metrics").text, "ledgerline_serving_registry_up") == 1


def test_a_service_started_while_the_tracking_server_is_away_is_not_ready_until_it_returns(
    credit_v1: Any, mlflow_server: Any, platform: Any, tcp_proxy: Any, live_app: Any, sv: Any
) -> None:
    proxy = tcp_proxy(mlflow_server.tracking_uri)
    proxy.cut()
    via = platform.model_copy(update={"tracking_uri": f"http://127.0.0.1:{proxy.port}"})
    server = live_app(sv.serving_settings(poll_interval_seconds=0.5), via)
    with server.client() as c:
        assert c.get("/health").status_code == 200
        not_ready = c.get("/ready")
        assert not_ready.status_code == 503 and not_ready.json()["models"][sv.MODEL]["loaded"] is False
        r = c.post(f"/v1/models/{sv.MODEL}/predict", json={}, headers=sv.HEADERS)
        assert r.status_code == 503 and "no version loaded" in r.json()["detail"]
        proxy.restore()
        wait_for(lambda: c.get("/ready").status_code == 200, timeout=60, what="model loaded by the watcher")
