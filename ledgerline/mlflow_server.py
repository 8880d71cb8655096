"""Start, probe and stop a real ``mlflow server`` process.

:func:`server_command` is the one canonical argv for the tracking server. The
docker-compose ``mlflow`` service runs exactly the same options (a unit test
compares them), the test fixtures and the demo start it through
:func:`start_server`.

Notes on MLflow 3.17's server that shaped this module:

* ``mlflow server`` is a supervisor: it runs the DB migrations, then spawns
  ``python -m uvicorn`` (and, unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``,
  a job runner with several huey consumers). :func:`start_server` therefore puts
  it in its own process group and :func:`stop_server` signals the whole group.
* A host-header middleware rejects API requests whose ``Host`` is not
  localhost or a private IP with ``403 Invalid Host header``. ``/health`` is
  exempt, so a green health check does not prove clients can talk to it. When
  the server is reached by a DNS name (``mlflow:5000`` in compose), pass
  ``allowed_hosts``; the list *replaces* the defaults, so keep localhost in it.
* With SQLAlchemy 2.1 a bare ``postgresql://`` URL selects the psycopg 3 driver;
  use ``postgresql+psycopg2://`` (what the lock file ships).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ledgerline.errors import LedgerlineError

logger = logging.getLogger(__name__)

#: The argv prefix that runs the mlflow CLI of the current interpreter.
MLFLOW_CLI_PREFIX: tuple[str, ...] = (sys.executable, "-m", "mlflow")

#: Environment variables an ``s3://`` artifacts destination needs in the server process.
S3_ENV_VARS: tuple[str, ...] = (
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


class ServerStartError(LedgerlineError):
    """A server process exited or did not answer its health check in time."""


def server_command(
    *,
    backend_store_uri: str,
    artifacts_destination: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    allowed_hosts: str | None = None,
) -> list[str]:
    """Return the canonical argv of ``mlflow server``.

    Artifacts are proxied (``--serve-artifacts``): clients upload and download
    through the tracking server, so only the server needs storage credentials.
    ``allowed_hosts`` is a comma-separated list of accepted ``Host`` headers
    (MLflow's DNS-rebinding protection); ``None`` keeps MLflow's default of
    localhost and private IPs.
    """
    argv = [
        *MLFLOW_CLI_PREFIX,
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if allowed_hosts is not None:
        argv += ["--allowed-hosts", allowed_hosts]
    return argv


def s3_env(*, endpoint_url: str | None, access_key_id: str, secret_access_key: str, region: str) -> dict[str, str]:
    """Environment for a server whose artifacts destination is ``s3://`` (MinIO, moto or AWS)."""
    env = {
        "AWS_ACCESS_KEY_ID": access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret_access_key,
        "AWS_DEFAULT_REGION": region,
    }
    if endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint_url
    return env


def start_server(
    *,
    backend_store_uri: str,
    artifacts_destination: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    allowed_hosts: str | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` in its own process group, stdout and stderr to ``log_path``.

    ``env`` is layered over the current environment. Returns immediately; call
    :func:`wait_ready` next and :func:`stop_server` when done.
    """
    argv = server_command(
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        host=host,
        port=port,
        workers=workers,
        allowed_hosts=allowed_hosts,
    )
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    # The server's job runner only serves GenAI jobs Ledgerline does not use: 8 fewer processes.
    full_env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if backend_store_uri.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        logger.warning(
            "backend store URI %s selects the psycopg 3 driver (SQLAlchemy 2.1), which is not installed; "
            "use postgresql+psycopg2://",
            backend_store_uri.split("@")[-1],
        )
    if artifacts_destination.startswith("s3://"):
        missing = [name for name in S3_ENV_VARS if not full_env.get(name)]
        if missing:
            logger.warning("s3:// artifacts destination but %s not set for the mlflow server", ", ".join(missing))
    logger.info("starting mlflow server on %s:%s (log: %s)", host, port, log_path)
    return start_process(argv, env=full_env, log_path=log_path)


def start_process(argv: list[str], *, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group) with output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )


def log_tail(log_path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    if log_path is None:
        return "(no log file)"
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {log_path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def wait_for_http(
    url: str,
    *,
    timeout: float = 120,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    name: str = "server",
    interval: float = 0.25,
) -> float:
    """Poll ``url`` until it answers HTTP 200; return the seconds waited.

    Raises :class:`ServerStartError` with the log tail when ``proc`` exits first
    or ``timeout`` passes.
    """
    start = time.monotonic()
    deadline = start + timeout
    last_error = "no attempt made"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(
                f"{name} exited with code {proc.returncode} before {url} answered.\n"
                f"--- last lines of {log_path} ---\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, timeout)) as response:
                if response.status == 200:
                    return time.monotonic() - start
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"{name} did not answer {url} within {timeout:.0f}s (last error: {last_error}).\n"
                f"--- last lines of {log_path} ---\n{log_tail(log_path)}"
            )
        time.sleep(interval)


def wait_ready(
    url: str,
    timeout: float = 120,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until the tracking server at ``url`` answers ``GET /health``.

    Pass the ``proc`` and ``log_path`` from :func:`start_server` to fail fast,
    with the log tail, when the server dies during startup (bad backend URI,
    port in use, failed migration).
    """
    waited = wait_for_http(
        url.rstrip("/") + "/health", timeout=timeout, proc=proc, log_path=log_path, name="mlflow server"
    )
    logger.info("mlflow server at %s ready after %.1fs", url, waited)


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process of the group exists."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stop a process started by :func:`start_server` / :func:`start_process` and all its children.

    SIGTERM to the process group, then SIGKILL for whatever is still alive after ``timeout``.
    """
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not _group_alive(pgid):
            break
        time.sleep(0.1)
    else:
        logger.warning("process group %s still alive %.0fs after SIGTERM; killing it", pgid, timeout)
        _signal_group(pgid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        logger.error("process %s did not exit after SIGKILL", pgid)


# --------------------------------------------------------------------------- PID files
#
# A PID alone does not name a process for long: after a reboot or a crash the number is
# reused by something else. A PID file therefore also records the boot (the kernel's boot id)
# and the process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot): that
# triple names one process for ever. A process is ours only while all three still match, and
# only then is its process group signalled. The command line is recorded for the messages
# (programs may rewrite it with setproctitle, so it is not part of the proof).


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies a process we started: boot, pid (also its process group), start time; argv for people."""

    pid: int
    start_time: int
    boot_id: str
    cmdline: tuple[str, ...] = ()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start_time(pid: int) -> int | None:
    """Start time of a live, non-zombie process; None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def record_process(pid: int) -> ProcessRecord:
    """Identify the live process ``pid`` (right after starting it)."""
    start_time = _proc_start_time(pid)
    if start_time is None:
        raise LedgerlineError(f"process {pid} exited right after it was started")
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        raw = b""
    return ProcessRecord(pid, start_time, _boot_id(), tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a))


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` with its boot, start time and command line (JSON), written atomically.

    A process that has already exited leaves no file (the caller's readiness wait reports why).
    """
    try:
        rec = record_process(pid)
    except LedgerlineError:
        logger.warning("process %s exited before its pid file was written", pid)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": rec.pid, "start_time": rec.start_time, "boot_id": rec.boot_id,
                               "cmdline": list(rec.cmdline)}))
    tmp.replace(path)


def read_pid_file(path: Path) -> ProcessRecord | None:
    """The record in ``path``; None for a file that is not one (an older bare-PID file, junk)."""
    try:
        data = json.loads(path.read_text())
        return ProcessRecord(int(data["pid"]), int(data["start_time"]), str(data["boot_id"]),
                             tuple(str(a) for a in data.get("cmdline", [])))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def is_ours(rec: ProcessRecord) -> bool:
    """True while process ``rec.pid`` is the very process recorded (same boot, same start time)."""
    return bool(rec.boot_id) and rec.boot_id == _boot_id() and _proc_start_time(rec.pid) == rec.start_time


def stop_recorded(rec: ProcessRecord, timeout: float = 20.0) -> bool:
    """Stop a recorded process and its process group, only if it is still ours; True when signalled.

    Our processes lead their own group (``start_new_session``), so the group id is the pid.
    """
    if not is_ours(rec):
        return False
    try:
        if os.getpgid(rec.pid) != rec.pid:  # not a group leader: never signal someone else's group
            return False
    except ProcessLookupError:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_group(rec.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _group_alive(rec.pid):
                return True
            time.sleep(0.2)
        if sig is signal.SIGTERM:
            logger.warning("process group %s still alive %.0fs after SIGTERM; killing it", rec.pid, timeout)
    return True
