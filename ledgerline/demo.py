"""``make demo``: the MLflow UI on 127.0.0.1:5000 and the whole loop on embedded defaults.

Everything lives under ``settings.home`` (default ``.ledgerline/``): the SQLite
backend store, the artifact folder, the app database, snapshots, logs and pid
files. A second run reuses the running server; ``ledgerline down`` stops it.
"""

from __future__ import annotations

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
    from training.pipeline import TrainRequest, run_training

    t0 = time.perf_counter()
    settings.home.mkdir(parents=True, exist_ok=True)
    uri = ensure_mlflow_server(settings, progress).rstrip("/")
    result = run_training(settings, TrainRequest(family="credit-risk", rows=rows, trigger="manual"), progress)
    run_url = f"{uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    lines = [
        "",
        f"Ledgerline demo finished in {time.perf_counter() - t0:.0f}s. Where to look:",
        f"  MLflow UI            {uri}",
        f"  experiment           {uri}/#/experiments/{result.experiment_id}   ({settings.experiment_name(result.model_name)})",
        f"  training run         {run_url}",
        f"  registered model     {uri}/#/models/{result.model_name}   (@champion = v{result.champion}, "
        f"this run = v{result.version}, {'promoted' if result.decision.passed else 'not promoted'})",
        f"  plots                {run_url}/artifacts  -> plots/roc_curve.png, plots/calibration.png, plots/feature_importance.png",
        f"  validation           {data_docs_link(settings, result.experiment_id, result.run_id)}",
        f"                       (also in the run: {run_url}/artifacts -> validation/data_docs/, validation/result.json)",
        "  test metrics         " + ", ".join(f"{k}={result.metrics[k]:.3f}" for k in ("roc_auc", "pr_auc", "ks", "brier")),
        f"  promotion ledger     ledgerline ledger {result.model_name}   (app db: {settings.resolved_app_db_url()})",
        f"  snapshot             {result.snapshot_uri}",
        "",
        "The MLflow server, the serving API and Airflow keep running; `make down` stops them.",
    ]
    from ledgerline.airflow_demo import ensure_airflow  # Airflow on :8080 (not waited for)

    lines[-2:-2] = ensure_airflow(settings)
    from serving.demo import start_serving  # the prediction API on :8000 with the promoted model

    lines[-2:-2] = start_serving(settings, result.model_name, progress)
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
