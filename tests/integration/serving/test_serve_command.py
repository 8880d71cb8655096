"""``ledgerline serve`` as a real process with two uvicorn workers: it serves over HTTP, its
metrics add up across workers, and SIGTERM drains the prediction log of every worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_ledgerline_serve_answers_over_http_and_flushes_every_worker_on_sigterm(
    credit_v1: Any, fresh_app_db_url: str, tmp_path: Path, sv: Any
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_")},
        "LEDGERLINE_TRACKING_URI": credit_v1.settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": fresh_app_db_url,
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        "LEDGERLINE_SERVING_MODELS": sv.MODEL,
        "LEDGERLINE_SERVING_API_KEYS": sv.API_KEY,
        "LEDGERLINE_SERVING_ADMIN_KEY": sv.ADMIN_KEY,
        "LEDGERLINE_SERVING_LOG_FLUSH_INTERVAL_SECONDS": "30",  # nothing is written before the shutdown
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    log = tmp_path / "serve.log"
    proc, url = sv.start_serve(env, log)
    try:
        answered = 0
        with httpx.Client(base_url=url, timeout=30) as c:
            record = c.get("/v1/models", headers=sv.HEADERS).json()["models"][sv.MODEL]["example"]
            for i in range(20):
                r = c.post(f"/v1/models/{sv.MODEL}/predict", json=[record] * (1 + i % 3), headers=sv.HEADERS)
                assert r.status_code == 200, r.text
                answered += len(r.json()["predictions"])
            assert c.post("/admin/reload", headers=sv.ADMIN).status_code == 200
            metrics = c.get("/metrics").text  # one worker answers, the numbers are every worker's
        labels = {"model": sv.MODEL, "version": credit_v1.v1}
        assert sv.metric(metrics, "ledgerline_serving_requests_total", status="200", **labels) == 20
        assert sv.metric(metrics, "ledgerline_serving_predictions_total", **labels) == answered
        assert sv.count_predictions(fresh_app_db_url) == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(90)
    assert code == 0, log.read_text()[-3000:]
    assert sv.count_predictions(fresh_app_db_url) == answered
    text = log.read_text()
    assert sv.API_KEY not in text and sv.ADMIN_KEY not in text
