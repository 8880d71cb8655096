"""Every request costs work and memory bounded by its size, and no client can hold a connection
open without limit: checked against the app under a real uvicorn (in a thread, and as the
``ledgerline serve`` process with two workers)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _raw(port: int, data: bytes, *, read_timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection and read until the server closes it or answers.

    Returns what was read and the seconds until the first byte (or the close) came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        t0 = time.monotonic()
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except ConnectionResetError:
            pass
        return b"".join(chunks), time.monotonic() - t0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_16_mib_body_of_unknown_keys_gets_a_quick_bounded_422_while_health_keeps_answering(
    platform: Any, live_app: Any, sv: Any
) -> None:
    server = live_app(sv.serving_settings(), platform)
    with server.client() as c:
        good = c.get("/v1/models", headers=sv.HEADERS).json()["models"][sv.MODEL]["example"]
    # the body: valid records, each with 1,000 unknown keys, up to the 16 MiB limit
    one = json.dumps({**good, **{f"x{i:03d}": 0 for i in range(1000)}}, separators=(",", ":")).encode()
    body = b"[" + b",".join([one] * ((16 * 1024 * 1024 - 2) // (len(one) + 1))) + b"]"
    assert len(body) <= 16 * 1024 * 1024
    before = _rss_mib()
    peak = [before]
    health: list[float] = []
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as hc:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mib())
                t0 = time.perf_counter()
                assert hc.get("/health").status_code == 200
                health.append(time.perf_counter() - t0)
                time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        t0 = time.perf_counter()
        with server.client() as c:
            r = c.post(f"/v1/models/{sv.MODEL}/predict", content=body, headers={**sv.HEADERS, "content-type": "application/json"})
        seconds = time.perf_counter() - t0
    finally:
        done.set()
        watcher.join()
    assert r.status_code == 422, r.text[:500]
    errors = r.json()["errors"]
    assert 1 <= len(errors) <= 51
    assert errors[0] == {"field": "body[0].x000", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
    assert seconds < 5, f"422 took {seconds:.1f}s"
    # it was blocked for 42 s; the slowest answer gets room for a loaded test machine
    health.sort()
    assert len(health) >= 3 and health[len(health) // 2] < 0.1, f"/health took {health} s while the body was checked"
    assert health[-1] < 0.5, f"/health took up to {health[-1] * 1000:.0f} ms while the body was checked"
    # the client's copy of the body, the server's, plus parsing: a small multiple of 16 MiB, not gigabytes
    assert peak[0] - before < 6 * 16, f"RSS grew {peak[0] - before:.0f} MiB"
    # and the server still answers normally
    with server.client() as c:
        assert c.post(f"/v1/models/{sv.MODEL}/predict", json=good, headers=sv.HEADERS).status_code == 200


def test_a_batch_of_empty_records_is_refused_in_milliseconds(platform: Any, live_app: Any, sv: Any) -> None:
    server = live_app(sv.serving_settings(), platform)
    with server.client() as c:
        t0 = time.perf_counter()
        r = c.post(f"/v1/models/{sv.MODEL}/predict", json=[{}] * 5000, headers=sv.HEADERS)
        seconds = time.perf_counter() - t0
    assert r.status_code == 422
    assert len(r.json()["errors"]) <= 51 and r.json()["errors"][0]["type"] == "missing"
    assert seconds < 0.2, f"{seconds * 1000:.0f} ms"


def test_feedback_without_a_key_is_refused_before_its_body_is_read(platform: Any, live_app: Any, sv: Any) -> None:
    server = live_app(sv.serving_settings(), platform)
    # 50 MiB announced, not a byte of it sent: the answer must not wait for the body
    head = (
        b"POST /v1/feedback HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 52428800\r\n\r\n"
    )
    answer, seconds = _raw(server.port, head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert seconds < 1


def test_feedback_bodies_over_the_cap_get_413_declared_or_streamed(platform: Any, live_app: Any, sv: Any) -> None:
    server = live_app(sv.serving_settings(feedback_max_body_bytes=1024), platform)
    big = json.dumps({"prediction_id": "x", "label": "y" * 5000}).encode()
    with server.client() as c:
        declared = c.post("/v1/feedback", content=big, headers={**sv.HEADERS, "content-type": "application/json"})
        streamed = c.post("/v1/feedback", content=iter([big[:800], big[800:]]), headers={**sv.HEADERS, "content-type": "application/json"})
        bad = c.post("/v1/feedback", json={"prediction_id": "x", "label": 1, "extra": 2}, headers=sv.HEADERS)
        garbled = c.post("/v1/feedback", content=b"{nope", headers=sv.HEADERS)
    assert declared.status_code == 413 and "1024" in declared.json()["detail"]
    assert streamed.status_code == 413
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.extra"
    assert garbled.status_code == 400


def test_a_body_that_trickles_in_gets_408_and_a_hang_up_mid_upload_is_one_info_line(
    platform: Any, live_app: Any, sv: Any
) -> None:
    server = live_app(sv.serving_settings(body_timeout_seconds=1), platform)
    handler = _Records()
    watched = [logging.getLogger(n) for n in ("uvicorn.error", "serving", "fastapi", "starlette")]
    levels = [lg.level for lg in watched]
    for lg in watched:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        head = (
            f"POST /v1/models/{sv.MODEL}/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"x-api-key: {sv.API_KEY}\r\ncontent-length: 1000\r\n\r\n"
        ).encode()
        answer, seconds = _raw(server.port, head + b'[{"annual')
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"connection: close" in answer.lower()
        assert 0.9 < seconds < 5
        for path in (f"/v1/models/{sv.MODEL}/predict", "/v1/feedback"):
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(head.replace(f"/v1/models/{sv.MODEL}/predict".encode(), path.encode()) + b'[{"annual')
                time.sleep(0.2)
            time.sleep(0.3)
    finally:
        for lg, level in zip(watched, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    problems = [r for r in handler.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]
    hangups = [r for r in handler.records if "hung up" in r.getMessage()]
    assert len(hangups) == 2 and all(r.levelno == logging.INFO for r in hangups)


def test_ledgerline_serve_closes_half_sent_heads_refuses_huge_heads_and_removes_its_runtime_folder(
    credit_v1: Any, fresh_app_db_url: str, tmp_path: Path, sv: Any
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_")},
        "TMPDIR": str(tmp),
        "LEDGERLINE_TRACKING_URI": credit_v1.settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": fresh_app_db_url,
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        "LEDGERLINE_SERVING_MODELS": sv.MODEL,
        "LEDGERLINE_SERVING_API_KEYS": sv.API_KEY,
        "LEDGERLINE_SERVING_ADMIN_KEY": sv.ADMIN_KEY,
        "LEDGERLINE_SERVING_HEADER_TIMEOUT_SECONDS": "1",
        "LEDGERLINE_SERVING_MAX_HEADER_BYTES": "8192",
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    log = tmp_path / "serve.log"
    proc, url = sv.start_serve(env, log, ("--workers", "2", "--log-level", "info"))
    port = int(url.rsplit(":", 1)[1])
    try:
        assert [p.name for p in tmp.iterdir() if p.name.startswith("ledgerline-serving-")], "no runtime folder"
        # half a request line, then silence: closed after the 1 s head deadline
        answer, seconds = _raw(port, b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        assert answer == b"" and 0.9 < seconds < 5
        # a head larger than the cap: 431, connection closed
        answer, _ = _raw(port, b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-big: " + b"a" * 20000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        # the same, sent in pieces that never finish the head
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: ")
            for _ in range(3):  # 12 kB of an unfinished header: over the 8 kB cap
                s.sendall(b"a" * 4000)
                time.sleep(0.1)
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b"reset"
            assert data.startswith(b"HTTP/1.1 431") or data in (b"", b"reset"), data[:200]
        # a body larger than the head cap, arriving with the head, is no head overflow
        body = json.dumps({"prediction_id": "x", "label": "y" * 20000}).encode()
        answer, _ = _raw(port, b"POST /v1/feedback HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        # a client hanging up mid-upload
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                f"POST /v1/models/{sv.MODEL}/predict HTTP/1.1\r\nhost: x\r\nx-api-key: {sv.API_KEY}\r\n"
                "content-length: 100000\r\n\r\n[{".encode()
            )
            time.sleep(0.3)
        # normal requests are unaffected, on a kept-alive connection too
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(3):
                assert c.get("/health").status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(90)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]
    assert "hung up" in text
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("ledgerline-serving-")], "runtime folder left behind"
