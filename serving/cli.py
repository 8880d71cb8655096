"""``ledgerline serve``: the prediction API under uvicorn. Top-level imports stay light.

Keys come from the environment only (``LEDGERLINE_SERVING_API_KEYS``,
``LEDGERLINE_SERVING_ADMIN_KEY``), never from the command line where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

APP_FACTORY = "serving.app:app_from_env"


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
    p.add_argument("--models", help="comma-separated registered model names (default credit-risk)")
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
    return config


def run(settings: object, *, log_level: str = "warning") -> int:
    """Run uvicorn in the foreground until SIGINT/SIGTERM; shutdown flushes the prediction log."""
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
    try:
        _run_uvicorn(settings, log_level)
    finally:
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
