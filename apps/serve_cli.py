"""``ledgerline serve``: the prediction API under uvicorn. Top-level imports stay light.

Keys come from the environment only (``LEDGERLINE_SERVING_API_KEYS``,
``LEDGERLINE_SERVING_ADMIN_KEY``), never from the command line where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

APP_FACTORY = "apps.management:app_from_env"  # the serving app with model management
#: Loggers whose INFO lines are start-up progress (one line per model loaded): shown at any --log-level.
PROGRESS_LOGGERS = ("serving.loader", "serving.app")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "serve",
        help="serve the registry's @champion models over HTTP (keys from LEDGERLINE_SERVING_* env)",
        description="Serve models:/<name>@champion with prediction logging, feedback and hot swap. "
        "Settings come from LEDGERLINE_SERVING_* environment variables; the options below override them.",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.add_argument("--models", help="comma-separated registered model names (default: one per family, named like it)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ledgerline.errors import LedgerlineError

    overrides = {"host": args.host, "port": args.port, "workers": args.workers, "models": args.models}
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"LEDGERLINE_SERVING_{key.upper()}"] = str(value)
    try:
        from pydantic import ValidationError

        from serving.settings import ServingSettings

        settings = ServingSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_input=False)
        )
        raise LedgerlineError(
            f"serving settings are incomplete or invalid ({problems}); set LEDGERLINE_SERVING_API_KEYS and "
            "LEDGERLINE_SERVING_ADMIN_KEY (and other LEDGERLINE_SERVING_* variables) in the environment"
        ) from None
    return run(settings, log_level=args.log_level)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus our packages, so every worker process logs the same way."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("serving", "ledgerline"):
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    progress_level = min(logging.INFO, logging.getLevelNamesMapping()[level.upper()])
    for name in PROGRESS_LOGGERS:
        config["loggers"][name] = {"handlers": ["default"], "level": progress_level, "propagate": False}
    return config


def _say(line: str) -> None:
    sys.stderr.write(f"ledgerline serve: {line}\n")  # the CLI's own voice, whatever the log level
    sys.stderr.flush()


def _announce_ready(url: str, stop: threading.Event, *, note_every: float = 30.0) -> None:
    """Poll ``url``/ready and say once when every model is loaded (and, now and then, that it is still loading)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # our own port: never via a proxy
    started = time.monotonic()
    next_note = started + note_every
    while not stop.wait(0.5):
        try:
            with opener.open(f"{url}/ready", timeout=2) as resp:
                if resp.status == 200:
                    _say(f"ready at {url} after {time.monotonic() - started:.0f}s (docs: {url}/docs)")
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 503 while the models load
        if time.monotonic() >= next_note:
            _say(f"still loading after {time.monotonic() - started:.0f}s; {url}/ready says why")
            next_note += note_every


def run(settings: object, *, log_level: str = "warning") -> int:
    """Run uvicorn in the foreground until SIGINT/SIGTERM; shutdown flushes the prediction log.

    Progress goes to stderr at any ``log_level``: a line when starting, one per model loaded
    (from every worker), one when ``/ready`` answers, and the prediction log's flush at shutdown.
    """
    from serving.http_limits import HEADER_BYTES_ENV, HEADER_TIMEOUT_ENV
    from serving.settings import ServingSettings

    assert isinstance(settings, ServingSettings)
    # the protocol class reads its limits from the environment: workers are separate processes
    os.environ[HEADER_TIMEOUT_ENV] = str(settings.header_timeout_seconds)
    os.environ[HEADER_BYTES_ENV] = str(settings.max_header_bytes)
    runtime: Path | None = None
    if settings.workers > 1:
        # Every worker must see the same signal file and metrics folder: decide them here,
        # before the workers start, and hand them down through the environment.
        runtime = Path(tempfile.mkdtemp(prefix="ledgerline-serving-"))
        os.environ.setdefault("LEDGERLINE_SERVING_RELOAD_SIGNAL_FILE", str(runtime / "reload.signal"))
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            (runtime / "metrics").mkdir()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(runtime / "metrics")
    probe_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{probe_host if ':' not in probe_host else f'[{probe_host}]'}:{settings.port}"
    _say(
        f"starting on {url} with {settings.workers} worker(s); loading "
        f"{', '.join(m + '@champion' for m in settings.models)} (one line per model loaded, then 'ready')"
    )
    stop = threading.Event()
    threading.Thread(target=_announce_ready, args=(url, stop), name="ready-announcer", daemon=True).start()
    try:
        _run_uvicorn(settings, log_level)  # on SIGTERM uvicorn re-raises the signal after its shutdown
    finally:
        stop.set()
        if runtime is not None:  # the workers have exited: their signal file and metrics go with them
            import shutil

            shutil.rmtree(runtime, ignore_errors=True)
    return 0


def _run_uvicorn(settings: Any, log_level: str) -> None:
    import uvicorn

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        log_config=log_config(log_level),
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(5, int(settings.shutdown_flush_timeout_seconds) + 5),
        loop="auto",
        # uvicorn's own protocol plus a deadline and a size cap on the request head (see serving.http_limits)
        http="serving.http_limits:BoundedHttpProtocol",
    )
