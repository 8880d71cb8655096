"""``make demo``: the MLflow UI on 127.0.0.1:5000 and the whole loop on embedded defaults.

Everything lives under ``settings.home`` (default ``.ledgerline/``): the SQLite
backend store, the artifact folder, the app database, snapshots, logs and pid
files. A second run reuses the running server; ``ledgerline down`` stops it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

Progress = Callable[[str], None]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _healthy(url: str, path: str = "/health") -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=3) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _pid_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "pids"


def _write_pid(settings: Settings, name: str, pid: int) -> None:
    """Record a process the demo started (pid, start time, command line) for ``ledgerline down``."""
    from ledgerline.mlflow_server import write_pid_file

    write_pid_file(_pid_dir(settings) / f"{name}.pid", pid)


def ensure_mlflow_server(settings: Settings, progress: Progress) -> str:
    """A tracking server at settings.tracking_uri: reuse a running one, or start one if it is local."""
    from ledgerline.mlflow_server import start_server, wait_ready

    uri = settings.tracking_uri
    if _healthy(uri):
        progress(f"MLflow server already running at {uri}; reusing it")
        return uri
    parsed = urlparse(uri)
    if parsed.scheme != "http" or parsed.hostname not in LOOPBACK:
        raise LedgerlineError(f"the tracking server {uri} is not reachable and is not local, so the demo cannot start it")
    home = settings.home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    Path(settings.resolved_artifacts_destination()).mkdir(parents=True, exist_ok=True)
    log = home / "logs" / "mlflow.log"
    progress(f"starting MLflow server on {parsed.hostname}:{parsed.port or 5000} (log: {log})")
    proc = start_server(
        backend_store_uri=settings.resolved_backend_store_uri(),
        artifacts_destination=settings.resolved_artifacts_destination(),
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5000,
        workers=1,
        log_path=log,
    )
    _write_pid(settings, "mlflow", proc.pid)
    wait_ready(uri, timeout=240, proc=proc, log_path=log)
    progress(f"MLflow server ready at {uri}")
    return uri


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _is_serving_api(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=3) as resp:
            return bool(json.loads(resp.read()).get("service") == "ledgerline-serving")
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return False


def port_problems(settings: Settings, *, serving_port: int = 8000, airflow_port: int = 8080) -> list[str]:
    """Ports the demo needs that another program holds (ours, from an earlier demo, are reused)."""
    from apps.airflow_demo import healthy as airflow_healthy

    problems: list[str] = []
    parsed = urlparse(settings.tracking_uri)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5000
    if parsed.scheme == "http" and host in LOOPBACK and _listening(host, port) and not _healthy(settings.tracking_uri):
        problems.append(f"port {port} (MLflow) is taken by something that is not an MLflow server")
    if _listening("127.0.0.1", serving_port) and not _is_serving_api(serving_port):
        problems.append(f"port {serving_port} (serving API) is taken by something that is not the Ledgerline serving API")
    if _listening("127.0.0.1", airflow_port) and not airflow_healthy(airflow_port):
        problems.append(f"port {airflow_port} (Airflow) is taken by something that is not Airflow")
    return problems


def check_ports(settings: Settings, *, serving_port: int = 8000, airflow_port: int = 8080) -> None:
    """Fail before any training when a port the demo needs is held by another program."""
    problems = port_problems(settings, serving_port=serving_port, airflow_port=airflow_port)
    if problems:
        raise LedgerlineError(
            "; ".join(problems)
            + ": stop that program (`make down` stops what an earlier demo started; "
            "`ss -ltnp` shows who holds a port) and run the demo again"
        )


def data_docs_link(settings: Settings, experiment_id: str, run_id: str) -> str:
    """Where to open the run's Data Docs: the validation page itself, as a file:// URL when the
    artifact store is a local folder (the site is self-contained, so it renders offline)."""
    dest = settings.resolved_artifacts_destination()
    if "://" in dest:  # s3:// and the like: only the MLflow UI can show it
        return "validation/data_docs/ in the run's artifacts (the validations/ page shows the result)"
    site = Path(dest) / experiment_id / run_id / "artifacts" / "validation" / "data_docs"
    pages = sorted(site.glob("validations/**/*.html"))
    return (pages[-1] if pages else site / "index.html").resolve().as_uri()


def run_demo(settings: Settings, *, rows: int = 20_000, progress: Progress) -> int:
    """Train, promote and serve every registered family on generated data, then print where to look."""
    from apps.demo_steps import demo_step
    from ledgerline.families import FAMILIES
    from training.family import get_family
    from training.pipeline import TrainRequest, run_training

    t0 = time.perf_counter()
    check_ports(settings)  # before training: a taken :8000 must not be found after a model was promoted
    settings.home.mkdir(parents=True, exist_ok=True)
    uri = ensure_mlflow_server(settings, progress).rstrip("/")
    body: list[str] = []
    names: list[str] = []
    for family in FAMILIES:
        # the day's snapshot with the same spec and parameters: the champion is reused, nothing registered again
        progress(f"{family}: generating {rows:,} rows, validating, training and gating")
        result = run_training(settings, TrainRequest(family=family, rows=rows, trigger="manual"), progress)
        names.append(result.model_name)
        outcome = "unchanged, nothing registered" if result.skipped else ("promoted" if result.decision.passed else "not promoted")
        run_url = f"{uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
        headline = [k for k in get_family(family).headline_metrics if k in result.metrics]
        body += [
            f"  {result.model_name}:",
            f"    experiment         {uri}/#/experiments/{result.experiment_id}   ({settings.experiment_name(result.model_name)})",
            f"    training run       {run_url}   (plots: {run_url}/artifacts -> plots/)",
            f"    registered model   {uri}/#/models/{result.model_name}   (@champion = v{result.champion}, "
            f"this run = v{result.version}, {outcome})",
            f"    validation         {data_docs_link(settings, result.experiment_id, result.run_id)}",
            "    test metrics       " + ", ".join(f"{k}={result.metrics[k]:.3f}" for k in headline),
            f"    promotion ledger   ledgerline ledger {result.model_name}",
            *demo_step(family).training_lines(result.model_name),
            f"    snapshot           {result.snapshot_uri}",
        ]
    from apps.airflow_demo import ensure_airflow  # Airflow on :8080 (not waited for)

    airflow = ensure_airflow(settings)
    from apps.serve_demo import start_serving  # the prediction API on :8000 with every promoted model

    serving = start_serving(settings, names, progress)
    lines = [
        "",
        f"Ledgerline demo finished in {time.perf_counter() - t0:.0f}s. Where to look:",
        f"  MLflow UI            {uri}   (app db: {settings.resolved_app_db_url()})",
        *body,
        *airflow,
        *serving,
        "",
        "The MLflow server, the serving API and Airflow keep running; `make down` stops them.",
    ]
    for line in lines:
        print(line)
    return 0


def stop_all(settings: Settings, *, progress: Progress) -> None:
    """Stop every process the demo started (their whole process groups), and nothing else.

    A PID file names a process only while the process it recorded still runs: a PID reused by
    another program after a crash or reboot (other start time or command line), or a PID file
    without that record, is reported and removed, and nothing is signalled.
    """
    from ledgerline.mlflow_server import read_pid_file, stop_recorded

    d = _pid_dir(settings)
    pid_files = sorted(d.glob("*.pid")) if d.exists() else []
    if not pid_files:
        progress("nothing to stop")
        return
    for pf in pid_files:
        rec = read_pid_file(pf)
        if rec is None:
            progress(f"{pf.stem}: {pf} does not record a process Ledgerline started; removed it, signalled nothing")
        elif stop_recorded(rec):
            progress(f"stopped {pf.stem} (pid {rec.pid})")
        else:
            progress(f"{pf.stem} (pid {rec.pid}) is no longer running (the pid is free or another program's); "
                     "removed its pid file")
        pf.unlink(missing_ok=True)
