"""The prediction API: ``create_app(settings)`` builds it, the lifespan loads the champions.

Routes live in :mod:`serving.routes` (predict, feedback, operations); domain errors become
HTTP statuses in :mod:`serving.http_errors`; the per-model OpenAPI document is built in
:mod:`serving.openapi`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.routing import Route

from ledgerline import __version__
from ledgerline.settings import Settings
from serving import store
from serving.docs import add_docs_routes
from serving.errors import ServingError
from serving.family import family_routers
from serving.http_errors import request_validation_error, serving_error, unexpected_error
from serving.management import ModelManagement
from serving.metrics import ServingMetrics
from serving.model import ServedModel
from serving.monitoring_metrics import MonitoringExporter
from serving.openapi import build_openapi
from serving.predlog import PredictionLog
from serving.routes import batches, feedback, models, operations
from serving.routes.predict import predict_endpoint
from serving.settings import ServingSettings
from serving.state import ServingState, spill_dir
from serving.watcher import ChampionWatcher, ModelHolder

logger = logging.getLogger(__name__)


def create_app(
    settings: ServingSettings, platform: Settings | None = None, management: ModelManagement | None = None
) -> FastAPI:
    """The serving app. Nothing is loaded or started until the app's lifespan begins.

    ``management`` does the writes of ``/v1/models/{name}/promote|rollback|retrain`` (``ledgerline serve``
    passes :class:`apps.management.PipelineManagement`); without it they answer 503.
    """
    platform = platform or Settings()
    metrics = ServingMetrics()
    holder = ModelHolder(list(settings.models))
    db_url = settings.app_db_url or platform.resolved_app_db_url()
    engine = store.make_engine(db_url)
    log = PredictionLog(
        engine,
        batch_rows=settings.log_batch_rows,
        flush_interval=settings.log_flush_interval_seconds,
        buffer_rows=settings.log_buffer_rows,
        overflow=settings.log_overflow,
        retry_max=settings.log_retry_max_seconds,
        spill_dir=spill_dir(platform, db_url),
        observer=metrics,
        wal=settings.log_wal,
    )
    app = FastAPI(
        title="Ledgerline serving",
        version=__version__,
        description="Predictions from the registry's @champion models, with a prediction log and feedback.",
        lifespan=_lifespan,
        docs_url=None,  # serving.docs serves /docs with local assets (no CDN)
        redoc_url=None,
    )

    def on_swap(model: ServedModel, old: ServedModel | None) -> None:
        app.openapi_schema = None  # the request schema may have changed with the version
        _freeze_heap()

    state = ServingState(
        settings=settings,
        platform=platform,
        metrics=metrics,
        holder=holder,
        watcher=ChampionWatcher(holder, platform, settings, metrics, on_swap=on_swap),
        engine=engine,
        log=log,
        api_keys=tuple(k.get_secret_value().encode() for k in settings.api_keys),
        admin_key=settings.admin_key.get_secret_value().encode(),
        versions=_versions(),
        started_at=datetime.now(UTC),
        management=management,
    )
    app.state.serving = state

    def on_feedback_moved(moved: list[store.MovedFeedback]) -> None:
        for item in moved:
            current = holder.current(item.model_name)
            if current is not None and current.on_feedback is not None:
                current.on_feedback(item.prediction_id, item.label)

    log.on_feedback_moved = on_feedback_moved
    app.state.monitoring_exporter = MonitoringExporter(engine, settings.models)
    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.include_router(operations.router)
    app.include_router(feedback.router)
    for router in family_routers():  # a family's own routes (families/<stem>/routes.py)
        app.include_router(router)
    app.include_router(models.router)
    app.include_router(batches.router)
    add_docs_routes(app)
    # first in the route list: the hot path should not be matched against every other route
    app.router.routes.insert(0, Route("/v1/models/{name}/predict", predict_endpoint, methods=["POST"], include_in_schema=False))
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """The app without model management (``ledgerline serve`` runs ``apps.management:app_from_env``)."""
    return create_app(ServingSettings())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServingState = app.state.serving
    state.metrics.forget_dead_workers()  # a worker killed hard left its gauges behind
    state.metrics.log_state(0, state.settings.log_buffer_rows, False, True)
    try:  # tables up front, so feedback and monitoring find them; if the database is away the writer retries
        await anyio.to_thread.run_sync(state.log.tables.ensure)
    except Exception as exc:
        logger.warning("app database not reachable at start (%s); predictions are buffered until it is", exc)
    state.log.start()
    try:
        report = await anyio.to_thread.run_sync(lambda: state.watcher.check())
        logger.info("serving started: %s", report.get("models"))
    except Exception:
        logger.exception("initial model load failed; /ready stays 503 until the watcher succeeds")
    _freeze_heap()
    state.watcher.start()
    try:
        yield
    finally:
        state.watcher.stop()
        left = await anyio.to_thread.run_sync(state.log.close, state.settings.shutdown_flush_timeout_seconds)
        if left:
            logger.error("shutdown: %d prediction-log rows were not written to the database", left)
        else:
            logger.info("shutdown: prediction log flushed (%d rows written)", state.log.written_rows)
        state.engine.dispose()
        if state.metrics.multiprocess:  # this worker's live gauges leave the aggregate
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def _freeze_heap() -> None:
    """Move what is alive now (libraries, the loaded models) out of the garbage collector's sight.

    A full collection otherwise walks every object mlflow, pandas and sklearn created, a pause
    of tens of milliseconds that lands on whichever request triggers it (the p99). Objects
    created later are collected as usual.
    """
    import gc

    gc.unfreeze()  # a replaced model's cycles become collectable again
    gc.collect()
    gc.freeze()


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("mlflow", "xgboost", "scikit-learn", "fastapi", "pydantic"):
        try:
            out[pkg] = pkg_version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out
