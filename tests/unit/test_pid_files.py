"""``ledgerline down`` stops only processes proven to be the ones the demo started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.demo import _write_pid, stop_all
from ledgerline.mlflow_server import read_pid_file, record_process, start_process
from ledgerline.settings import Settings

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")  # type: ignore[call-arg]


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen[bytes]]:
    """A process Ledgerline did not start, leading its own process group (like a stranger's server)."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(10)


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    time.sleep(0.3)
    return proc.poll() is None


def _pid_file(settings: Settings, name: str) -> Path:
    path = settings.home.resolve() / "pids" / f"{name}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_stale_bare_pid_file_naming_an_unrelated_process_leaves_it_alive(
    settings: Settings, unrelated: subprocess.Popen[bytes]
) -> None:
    pf = _pid_file(settings, "mlflow")
    pf.write_text(str(unrelated.pid))  # the old format: a bare number, no proof of identity
    said: list[str] = []

    stop_all(settings, progress=said.append)

    assert _alive(unrelated)
    assert not pf.exists()
    assert "signalled nothing" in said[0]


def test_a_pid_file_whose_process_was_replaced_by_another_program_leaves_that_program_alive(
    settings: Settings, unrelated: subprocess.Popen[bytes]
) -> None:
    rec = record_process(unrelated.pid)
    pf = _pid_file(settings, "serving")  # what we recorded for a process that died; the pid went to `sleep`
    pf.write_text(json.dumps({"pid": rec.pid, "start_time": rec.start_time - 100, "boot_id": rec.boot_id,
                              "cmdline": ["ledgerline", "serve"]}))
    said: list[str] = []

    stop_all(settings, progress=said.append)

    assert _alive(unrelated)
    assert not pf.exists()
    assert "no longer running" in said[0]


def test_a_pid_file_from_another_boot_signals_nothing(settings: Settings, unrelated: subprocess.Popen[bytes]) -> None:
    rec = record_process(unrelated.pid)
    _pid_file(settings, "airflow").write_text(
        json.dumps({"pid": rec.pid, "start_time": rec.start_time, "boot_id": "another-boot", "cmdline": []})
    )

    stop_all(settings, progress=lambda _: None)

    assert _alive(unrelated)


def test_down_stops_a_process_the_demo_started_with_its_children(settings: Settings, tmp_path: Path) -> None:
    # a parent that starts a child in its own group, like `mlflow server` and its uvicorn
    code = "import subprocess, time; subprocess.Popen(['sleep', '120']); time.sleep(120)"
    proc = start_process([sys.executable, "-c", code], env=dict(os.environ), log_path=tmp_path / "p.log")
    try:
        _write_pid(settings, "mlflow", proc.pid)
        rec = read_pid_file(_pid_file(settings, "mlflow"))
        assert rec is not None and rec.pid == proc.pid and rec.cmdline[0] == sys.executable
        said: list[str] = []

        stop_all(settings, progress=said.append)

        assert proc.wait(10) is not None
        assert said == [f"stopped mlflow (pid {proc.pid})"]
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # the child is gone too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
