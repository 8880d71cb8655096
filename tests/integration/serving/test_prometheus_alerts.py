"""Debian's prometheus, run natively with the project's own config and alert rules against a running
serving app: the app-database alert fires when the database goes away and clears when it returns.

The test copy of the config points the serving job at the test's server, scrapes and evaluates every
second and shortens the rules' ``for:`` to 1 s; the expressions are the project's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "infra" / "prometheus"

def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:  # a fresh machine: we are root and Debian's package is one apt-get away
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus"], check=False, capture_output=True, timeout=600)
        found = shutil.which("prometheus")
    assert found, "Debian's prometheus is not installed and could not be installed (apt-get install -y prometheus)"
    return found

@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory: ``prometheus("127.0.0.1:PORT")`` starts Prometheus scraping that serving target; returns its URL."""
    from ledgerline.mlflow_server import start_process, stop_server, wait_for_http

    from .conftest import free_port  # noqa: F401  (importlib mode: see below)

    procs: list[Any] = []

    def start(target: str) -> str:
        binary = _prometheus_binary()
        config = yaml.safe_load((PROM / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
        config["scrape_configs"] = [{"job_name": "serving", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}]
        (tmp_path / "rules").mkdir()
        for rules in (PROM / "rules").glob("*.yml"):
            text = re.sub(r"(?m)^(\s*)for: \S+", r"\1for: 1s", rules.read_text())
            (tmp_path / "rules" / rules.name).write_text(text)
        config["rule_files"] = [str(tmp_path / "rules" / "*.yml")]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        proc = start_process(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            env=dict(os.environ), log_path=tmp_path / "prometheus.log",
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/-/ready", timeout=60, proc=proc, log_path=tmp_path / "prometheus.log", name="prometheus")
        return url

    yield start
    for proc in procs:
        stop_server(proc, timeout=20)

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

def _alerts(url: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=5) as resp:
        data = json.load(resp)
    return {a["labels"]["alertname"]: a["state"] for a in data["data"]["alerts"]}

def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)

def test_the_database_down_alert_fires_when_the_app_database_goes_away_and_clears_when_it_returns(
    platform: Any, fresh_app_db_url: str, tcp_proxy: Any, live_app: Any, sv: Any, prometheus: Any
) -> None:
    proxy = tcp_proxy(fresh_app_db_url)
    platform = platform.model_copy(update={"app_db_url": sv.via_proxy(fresh_app_db_url, proxy)})
    server = live_app(sv.serving_settings(log_retry_max_seconds=0.5), platform)
    record = sv.example_record(server)
    prom = prometheus(f"127.0.0.1:{server.port}")
    with server.client() as c:
        assert c.post(f"/v1/models/{sv.MODEL}/predict", json=record, headers=sv.HEADERS).status_code == 200
        _wait(lambda: _alerts_ok(prom), 30, "Prometheus scraping the app with no alert firing")
        proxy.cut()  # the app database goes away
        assert c.post(f"/v1/models/{sv.MODEL}/predict", json=record, headers=sv.HEADERS).status_code == 200  # buffered
        _wait(lambda: _alerts(prom).get("LedgerlineAppDatabaseDown") == "firing", 40, "LedgerlineAppDatabaseDown to fire")
        proxy.restore()  # and returns
        _wait(lambda: "LedgerlineAppDatabaseDown" not in _alerts(prom), 40, "LedgerlineAppDatabaseDown to clear")
    assert sv.count_predictions(fresh_app_db_url) == 2  # the buffered prediction was written after all

def _alerts_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?query=up%7Bjob%3D%22serving%22%7D", timeout=5) as resp:
            result = json.load(resp)["data"]["result"]
    except OSError:
        return False
    return bool(result) and result[0]["value"][1] == "1" and "LedgerlineAppDatabaseDown" not in _alerts(url)
