"""``ledgerline serve`` says what it is doing at the default log level: starting, each model loaded, ready,
and the prediction log's flush when it stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_ledgerline_serve_prints_a_line_when_starting_per_model_loaded_when_ready_and_at_shutdown(
    credit_v1: Any, fresh_app_db_url: str, tmp_path: Path, sv: Any
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_")},
        "LEDGERLINE_TRACKING_URI": credit_v1.settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": fresh_app_db_url,
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        "LEDGERLINE_SERVING_MODELS": sv.MODEL,
        "LEDGERLINE_SERVING_API_KEYS": sv.API_KEY,
        "LEDGERLINE_SERVING_ADMIN_KEY": sv.ADMIN_KEY,
    }
    log = tmp_path / "serve.log"
    cli = Path(sys.executable).parent / "ledgerline"
    with log.open("wb") as out:  # no --log-level: the default (warning)
        proc = subprocess.Popen([str(cli), "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "ready at" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(90)
    lines = log.read_text().splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    starting = first(f"ledgerline serve: starting on http://127.0.0.1:{port}")
    loaded = first(f"loaded {sv.MODEL} v{credit_v1.v1}")
    ready = first(f"ledgerline serve: ready at http://127.0.0.1:{port}")
    assert starting < loaded < ready, "\n".join(lines)
    assert "shutdown: prediction log flushed" in lines[-1], "\n".join(lines)
