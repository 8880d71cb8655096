"""``ledgerline serve`` with two workers when a worker dies hard: every answered prediction reaches
the log (write-ahead log replayed, even after an outage of the database), feedback for a
prediction still in a buffer is never refused as unknown, and /metrics forgets the dead worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def workers_of(pid: int) -> list[int]:
    """The uvicorn worker processes (multiprocessing children) of the supervisor ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return sorted(out)


@contextmanager
def serve(tmp_path: Path, app_db_url: str, credit_v1: Any, sv: Any, **env_extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_")},
        "LEDGERLINE_TRACKING_URI": credit_v1.settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": app_db_url,
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        "LEDGERLINE_SERVING_MODELS": sv.MODEL,
        "LEDGERLINE_SERVING_API_KEYS": sv.API_KEY,
        "LEDGERLINE_SERVING_ADMIN_KEY": sv.ADMIN_KEY,
        "LEDGERLINE_SERVING_LOG_RETRY_MAX_SECONDS": "0.5",
        "LEDGERLINE_SERVING_FEEDBACK_WAIT_SECONDS": "0.2",
        "PROMETHEUS_MULTIPROC_DIR": "",
        **env_extra,
    }
    log = tmp_path / "serve.log"
    cli = Path(sys.executable).parent / "ledgerline"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(cli), "serve", "--port", str(port), "--workers", "2", "--log-level", "info"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200 and len(workers_of(proc.pid)) == 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)  # both workers have loaded the model
        yield proc, url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(90)


def predict_on_new_connections(url: str, sv: Any, record: dict[str, Any], requests: int) -> list[str]:
    """Each request on a fresh connection, so both workers get some; returns the answered ids."""
    ids: list[str] = []
    for i in range(requests):
        r = httpx.post(f"{url}/v1/models/{sv.MODEL}/predict", json=[record] * (1 + i % 4), headers=sv.HEADERS, timeout=30)
        assert r.status_code == 200, r.text
        ids.extend(p["prediction_id"] for p in r.json()["predictions"])
    return ids


def stored(url: str, table: str, ids: list[str]) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            cols = "prediction_id, model_name" + (", label" if table == "feedback" else "")
            rows = conn.execute(
                sa.text(f"SELECT {cols} FROM {table} WHERE prediction_id = ANY(:ids)"), {"ids": ids}  # noqa: S608
            ).all()
    finally:
        engine.dispose()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_a_worker_killed_during_a_database_outage_loses_no_answered_prediction_and_metrics_forget_it(
    credit_v1: Any, fresh_app_db_url: str, tcp_proxy: Any, tmp_path: Path, sv: Any
) -> None:
    proxy = tcp_proxy(fresh_app_db_url)
    with serve(tmp_path, sv.via_proxy(fresh_app_db_url, proxy), credit_v1, sv) as (proc, url):
        record = httpx.get(f"{url}/v1/models", headers=sv.HEADERS).json()["models"][sv.MODEL]["example"]
        before = predict_on_new_connections(url, sv, record, 6)
        wait_for(lambda: len(stored(fresh_app_db_url, "predictions", before)) == len(before), what="first rows written")
        proxy.cut()  # the database is gone: every answer from now on sits in a worker's buffer
        answered = predict_on_new_connections(url, sv, record, 40)
        segments = {p.name.split("-")[2]: p.stat().st_size for p in (tmp_path / "home").rglob("wal-*.log")}
        victim = max(workers_of(proc.pid), key=lambda pid: segments.get(str(pid), 0))
        assert segments.get(str(victim), 0) > 0, segments
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in workers_of(proc.pid) and len(workers_of(proc.pid)) == 2, what="worker replaced")
        proxy.restore()
        wait_for(lambda: len(stored(fresh_app_db_url, "predictions", answered)) == len(answered), timeout=90,
                 what="every answered prediction in the database")
        engine = sa.create_engine(fresh_app_db_url)
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one()
        engine.dispose()
        assert total == len(before) + len(answered)  # each exactly once
        wait_for(lambda: not any(f"-{victim}-" in p.name for p in (tmp_path / "home").rglob("wal-*.log")),
                 what="the dead worker's log deleted once replayed")

        def metrics_healthy() -> bool:
            text = httpx.get(f"{url}/metrics").text
            return (sv.metric(text, "ledgerline_serving_log_database_up") == 1
                    and sv.metric(text, "ledgerline_serving_log_queue_rows") == 0)

        # the dead worker's last values (database down, a full queue) would keep both wrong for good
        wait_for(metrics_healthy, what="/metrics: database up and an empty queue")


def test_feedback_for_a_prediction_still_in_a_buffer_is_never_refused_and_is_attached_later(
    credit_v1: Any, fresh_app_db_url: str, tmp_path: Path, sv: Any
) -> None:
    # rows wait 30 s in their worker's buffer: the feedback always arrives before its prediction row
    with serve(tmp_path, fresh_app_db_url, credit_v1, sv, LEDGERLINE_SERVING_LOG_FLUSH_INTERVAL_SECONDS="30") as (proc, url):
        record = httpx.get(f"{url}/v1/models", headers=sv.HEADERS).json()["models"][sv.MODEL]["example"]
        ids = predict_on_new_connections(url, sv, record, 12)[:12]
        assert not stored(fresh_app_db_url, "predictions", ids)
        statuses = []
        for i, pid in enumerate(ids):
            r = httpx.post(f"{url}/v1/feedback", json={"prediction_id": pid, "label": i % 2}, headers=sv.HEADERS)
            statuses.append(r.status_code)
            assert r.status_code in (201, 202), r.text  # recorded (this worker held it) or pending (the other did)
            if r.status_code == 202:
                assert r.json()["status"] == "pending" and r.json()["model"] is None
        again = httpx.post(f"{url}/v1/feedback", json={"prediction_id": ids[0], "label": 0}, headers=sv.HEADERS)
        assert again.status_code in (200, 202), again.text
        conflict = httpx.post(f"{url}/v1/feedback", json={"prediction_id": ids[0], "label": 1}, headers=sv.HEADERS)
        assert conflict.status_code == 409, conflict.text
        # an id that cannot be ours is still refused at once
        unknown = httpx.post(f"{url}/v1/feedback", json={"prediction_id": "0b6f1c3e-8d1a-4a57-9a8e-2f1d7c9b1e42", "label": 1},
                             headers=sv.HEADERS)
        assert unknown.status_code == 404
        os.killpg(proc.pid, signal.SIGTERM)  # a clean stop writes the buffers; pending labels are attached
        assert proc.wait(90) == 0
    labels = stored(fresh_app_db_url, "feedback", ids)
    assert labels == {pid: (sv.MODEL, str(i % 2)) for i, pid in enumerate(ids)}, statuses
    engine = sa.create_engine(fresh_app_db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM feedback_pending")).scalar_one() == 0
    engine.dispose()
