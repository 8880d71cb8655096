"""The prediction API: ``create_app(settings)`` builds it, the lifespan loads the champions.

Endpoints: ``POST /v1/models/{name}/predict``, ``POST /v1/feedback``, ``GET /v1/models``,
``GET /health``, ``GET /ready``, ``GET /metrics``, ``GET /version``, ``POST /admin/reload``
and ``GET /docs``. Domain errors become HTTP statuses here and nowhere else.

The predict route is a plain Starlette route: it reads the body bytes itself and hands
them to pydantic-core (no ``json.loads``, no FastAPI body machinery), answers with bytes
encoded by pydantic-core, and only appends one entry to the prediction log's buffer.
Its OpenAPI description is generated per served model from that model's request schema.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import to_json
from sqlalchemy.engine import Engine
from starlette.routing import Route

from ledgerline import __version__
from ledgerline.settings import Settings
from serving import store
from serving.errors import (
    AuthError,
    BatchTooLarge,
    FeedbackConflict,
    InvalidRecords,
    LogBufferFull,
    MalformedRequest,
    ModelLoadError,
    ModelNotReady,
    RegistryUnavailable,
    ServingError,
    StoreUnavailable,
    UnknownModel,
    UnknownPrediction,
)
from serving.metrics import ServingMetrics
from serving.model import ServedModel, predict
from serving.predlog import PredictionLog
from serving.settings import ServingSettings
from serving.store import LogEntry
from serving.watcher import ChampionWatcher, ModelHolder

logger = logging.getLogger(__name__)

#: Bodies above this size are parsed and scored in a worker thread so small requests keep flowing.
INLINE_BODY_BYTES = 32 * 1024

STATUS: dict[type[ServingError], int] = {
    MalformedRequest: 400,
    InvalidRecords: 422,
    BatchTooLarge: 413,
    UnknownModel: 404,
    UnknownPrediction: 404,
    FeedbackConflict: 409,
    ModelNotReady: 503,
    ModelLoadError: 503,
    RegistryUnavailable: 503,
    LogBufferFull: 503,
    StoreUnavailable: 503,
}
RETRY_AFTER = {ModelNotReady: "5", LogBufferFull: "5", StoreUnavailable: "5", RegistryUnavailable: "30"}

#: Allowed feedback labels per family, normalised to what the feedback table stores.
FEEDBACK_LABELS: dict[str, dict[Any, str]] = {"credit-risk": {0: "0", 1: "1", "0": "0", "1": "1"}}


# --------------------------------------------------------------------------- state


@dataclass
class ServingState:
    settings: ServingSettings
    platform: Settings
    metrics: ServingMetrics
    holder: ModelHolder
    watcher: ChampionWatcher
    engine: Engine
    log: PredictionLog
    api_keys: tuple[bytes, ...]
    admin_key: bytes
    versions: dict[str, str]
    started_at: datetime


def _state(request: Request) -> ServingState:
    return request.app.state.serving  # type: ignore[no-any-return]


def _authorize(request: Request, keys: tuple[bytes, ...], header: str, what: str) -> None:
    provided = request.headers.get(header)
    if not provided:
        raise AuthError(f"missing API key: send your key in the '{header}' header", missing=True)
    given = provided.encode()
    ok = False
    for key in keys:  # constant time per key; no early exit on a match
        ok |= hmac.compare_digest(given, key)
    if not ok:
        raise AuthError(f"the key in '{header}' is not valid for {what}", missing=False)


def spill_dir(platform: Settings, db_url: str) -> Path:
    """Where prediction-log rows go when the database is still away at shutdown: one folder per
    database, so rows are only ever replayed into the database they were meant for."""
    import hashlib

    from sqlalchemy.engine import make_url

    key = make_url(db_url).render_as_string(hide_password=True)
    return (platform.home / "prediction-log-spill" / hashlib.sha256(key.encode()).hexdigest()[:16]).resolve()


def require_api_key(request: Request) -> None:
    state = _state(request)
    _authorize(request, state.api_keys, state.settings.api_key_header, "predictions and feedback")


def require_admin_key(request: Request) -> None:
    state = _state(request)
    _authorize(request, (state.admin_key,), state.settings.api_key_header, "admin operations")


def new_prediction_ids(n: int) -> list[str]:
    """``n`` time-ordered ids in the UUIDv7 layout (RFC 9562): 48-bit Unix milliseconds, 74 random
    bits per request, the rows of a batch counting up in the low bits.

    Time-ordered keys land at the right edge of the primary-key index, which makes the
    prediction log's inserts markedly cheaper than random UUIDs, and sort ids by time.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    head = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62)
    low = rand & _LOW62
    out = []
    for i in range(n):
        h = f"{head | ((low + i) & _LOW62):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


_LOW62 = (1 << 62) - 1


# --------------------------------------------------------------------------- predict


def _score(body: bytes, model: ServedModel, t0: float) -> tuple[LogEntry, np.ndarray, bytes]:
    """Validate, predict, encode the answer and the log rows: everything CPU-bound of a request."""
    records = model.schema.parse(body)
    answers, scores = predict(records, model)
    ids = new_prediction_ids(len(records))
    name, version = model.name, model.version
    # each answer is encoded once: the same JSON goes into the response and into the log row
    encoded = [to_json(a) for a in answers]
    payload = _predictions_payload(ids, name, version, encoded)
    entry = LogEntry(
        name, version, datetime.now(UTC), ids,
        [to_json(r).decode() for r in records], [a.decode() for a in encoded], scores.tolist(),
        round((time.perf_counter() - t0) * 1000.0, 3),
    )
    return entry, scores, payload


def _score_and_submit(body: bytes, model: ServedModel, t0: float, state: ServingState) -> tuple[LogEntry, np.ndarray, bytes]:
    entry, scores, payload = _score(body, model, t0)
    state.log.submit(entry, wait=state.settings.log_full_wait_seconds)
    return entry, scores, payload


def _predictions_payload(ids: list[str], name: str, version: str, encoded: list[bytes]) -> bytes:
    """``to_json({"predictions": [{"prediction_id", "model", "version", **answer}, ...]})``, byte for
    byte, from the answers' JSON objects (each ``{...}`` and non-empty) without encoding them again."""
    mid = b'","model":' + to_json(name) + b',"version":' + to_json(version) + b","
    parts = [b'{"predictions":[']
    for i, (pid, a) in enumerate(zip(ids, encoded, strict=True)):
        if i:
            parts.append(b',{"prediction_id":"')
        else:
            parts.append(b'{"prediction_id":"')
        parts.append(pid.encode())
        if a == b"{}":  # an empty answer: no comma after the version
            parts.append(mid[:-1] + b"}")
        else:
            parts.append(mid)
            parts.append(a[1:])
    parts.append(b"]}")
    return b"".join(parts)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BatchTooLarge(f"the request body has {declared} bytes; the limit is {limit}: send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BatchTooLarge(f"the request body is larger than {limit} bytes: send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


async def predict_endpoint(request: Request) -> Response:
    t0 = time.perf_counter()
    state = _state(request)
    name = request.path_params["name"]
    model: ServedModel | None = None
    try:
        _authorize(request, state.api_keys, state.settings.api_key_header, "predictions")
        model = state.holder.get(name)
        body = await _read_body(request, state.settings.max_body_bytes)
        if len(body) > INLINE_BODY_BYTES:
            # in the worker thread, so a full buffer (the writer behind) can make it wait briefly instead of 503
            entry, scores, payload = await anyio.to_thread.run_sync(_score_and_submit, body, model, t0, state)
        else:
            entry, scores, payload = _score(body, model, t0)
            state.log.submit(entry)
        seconds = time.perf_counter() - t0
    except ServingError as exc:
        status = 401 if isinstance(exc, AuthError) and exc.missing else 403 if isinstance(exc, AuthError) else _status(exc)
        if model is not None:
            state.metrics.requests.labels(model.name, model.version, str(status)).inc()
        raise
    state.metrics.observed(model.name, model.version, seconds, scores)
    return Response(payload, media_type="application/json")


# --------------------------------------------------------------------------- feedback


class FeedbackRequest(BaseModel):
    """The actual outcome of a prediction, possibly days later."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"prediction_id": "0b6f1c3e-8d1a-4a57-9a8e-2f1d7c9b1e42", "label": 1}]})

    prediction_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=36, pattern=r"^[0-9A-Za-z-]+$")] = Field(
        description="the prediction_id a /predict answer returned"
    )
    label: Annotated[int, Field(strict=True, ge=-(2**31), le=2**31)] | Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")] = Field(
        description="the outcome; credit-risk: 1 = defaulted, 0 = repaid"
    )


class FeedbackResponse(BaseModel):
    status: Literal["recorded", "duplicate"]
    prediction_id: str
    model: str
    label: str
    received_at: datetime


def _normalise_label(family: str, label: int | str) -> str:
    allowed = FEEDBACK_LABELS.get(family)
    if allowed is None:
        return str(label)
    try:
        return allowed[label]
    except KeyError:
        shown = sorted({repr(k) for k in allowed})
        raise InvalidRecords(
            f"label {label!r} is not a {family} outcome; use one of {', '.join(shown)}",
            [{"field": "body.label", "message": f"must be one of {', '.join(shown)}", "type": "label"}],
        ) from None


def _feedback(state: ServingState, req: FeedbackRequest) -> store.FeedbackResult:
    pid = req.prediction_id
    try:
        state.log.tables.ensure()
    except store.DB_DOWN_ERRORS as exc:
        raise StoreUnavailable("the feedback store (app database) is unreachable; retry the same request later") from exc
    model_name = store.find_prediction(state.engine, pid)
    if model_name is None:
        # Labels can race their prediction's log record: give the writer(s) a moment.
        if state.log.contains(pid):
            state.log.flush(timeout=max(state.settings.feedback_wait_seconds, 5.0))
        elif state.settings.feedback_wait_seconds > 0:
            time.sleep(state.settings.feedback_wait_seconds)
        model_name = store.find_prediction(state.engine, pid)
    if model_name is None:
        raise UnknownPrediction(
            f"no prediction with id '{pid}' was logged; send the prediction_id that a /predict answer returned"
        )
    current = state.holder.current(model_name)
    family = current.family if current is not None else "credit-risk"
    label = _normalise_label(family, req.label)
    return store.record_feedback(state.engine, pid, label)


# --------------------------------------------------------------------------- responses


class ReasonCode(BaseModel):
    feature: str
    value: float | str | bool | None
    contribution: float = Field(description="log-odds added to the risk by this field (TreeSHAP)")


class CreditPrediction(BaseModel):
    prediction_id: str
    model: str
    version: str
    probability_of_default: float
    decision: Literal["approve", "decline"]
    threshold: float
    reason_codes: list[ReasonCode] = Field(description="fields that pushed the risk up most, largest first")


class PredictResponse(BaseModel):
    predictions: list[CreditPrediction]


class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


def _status(exc: ServingError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def _error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail}
    if errors is not None:
        content["errors"] = errors
    return JSONResponse(content, status_code=status, headers=headers)


def _endpoint(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


async def _serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    _state(request).metrics.errors.labels(_endpoint(request), type(exc).__name__).inc()
    if isinstance(exc, AuthError):
        if exc.missing:
            header = _state(request).settings.api_key_header
            return _error_response(401, str(exc), headers={"WWW-Authenticate": f'ApiKey header="{header}"'})
        return _error_response(403, str(exc))
    status = _status(exc)
    retry = next((v for k, v in RETRY_AFTER.items() if isinstance(exc, k)), None)
    errors = exc.errors if isinstance(exc, InvalidRecords) else None
    return _error_response(status, str(exc), errors, {"Retry-After": retry} if retry else None)


async def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    _state(request).metrics.errors.labels(_endpoint(request), "RequestValidationError").inc()
    errs = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errs):
        return _error_response(400, "the request body is not valid JSON; send a JSON object")
    out = []
    for e in errs[:50]:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc) or "body", "message": e.get("msg", ""), "type": e.get("type", "")})
    summary = "; ".join(f"{o['field']}: {o['message']}" for o in out[:3])
    return _error_response(422, f"the request does not match the schema: {summary}", out)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    try:
        _state(request).metrics.errors.labels(_endpoint(request), "internal").inc()
    except Exception:  # metrics must not hide the original problem
        pass
    return _error_response(500, "internal error; the server log has the details")


# --------------------------------------------------------------------------- the app


def create_app(settings: ServingSettings, platform: Settings | None = None) -> FastAPI:
    """The serving app. Nothing is loaded or started until the app's lifespan begins."""
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
    )
    app = FastAPI(
        title="Ledgerline serving",
        version=__version__,
        description="Predictions from the registry's @champion models, with a prediction log and feedback.",
        lifespan=_lifespan,
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
    )
    app.state.serving = state
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _add_routes(app)
    # first in the route list: the hot path should not be matched against every other route
    app.router.routes.insert(0, Route("/v1/models/{name}/predict", predict_endpoint, methods=["POST"], include_in_schema=False))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory serving.app:app_from_env`` (what ``ledgerline serve`` runs)."""
    return create_app(ServingSettings())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServingState = app.state.serving
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


def _add_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["operations"], summary="the process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="every configured model is loaded (503 otherwise); details on registry and prediction log",
        responses={503: {"description": "not every model is loaded"}},
    )
    async def ready(request: Request) -> JSONResponse:
        state = _state(request)
        models = {}
        for name in state.holder.names:
            m = state.holder.current(name)
            st = state.holder.status[name]
            models[name] = {
                "loaded": m is not None,
                "version": m.version if m else None,
                "champion": st.champion,
                "loaded_at": m.loaded_at.isoformat() if m else None,
                "error": st.error,
            }
        ok = state.holder.ready
        body = {
            "ready": ok,
            "models": models,
            "registry": state.watcher.registry_status(),
            "prediction_log": state.log.status(),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics(request: Request) -> Response:
        state = _state(request)
        log = state.log
        state.metrics.log_state(log.pending_rows, log.capacity, log.full, log.db_available)
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/version", tags=["operations"], summary="service, model and library versions")
    async def version(request: Request) -> dict[str, Any]:
        state = _state(request)
        return {
            "service": "ledgerline-serving",
            "version": __version__,
            "models": {n: (m.version if (m := state.holder.current(n)) else None) for n in state.holder.names},
            "libraries": state.versions,
            "started_at": state.started_at.isoformat(),
        }

    @app.get(
        "/v1/models",
        tags=["predictions"],
        summary="the served models, their versions and input fields",
        dependencies=[Depends(require_api_key)],
        responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
    )
    async def list_models(request: Request) -> dict[str, Any]:
        state = _state(request)
        out = {}
        for n in state.holder.names:
            m = state.holder.current(n)
            out[n] = None if m is None else {
                "version": m.version,
                "family": m.family,
                "run_id": m.run_id,
                "loaded_at": m.loaded_at.isoformat(),
                "details": m.details,
                "inputs": {c.name: c.describe() for c in m.schema.columns},
                "example": m.schema.example,
            }
        return {"models": out}

    @app.post(
        "/v1/feedback",
        tags=["predictions"],
        summary="record the actual outcome of a prediction (idempotent)",
        status_code=201,
        response_model=FeedbackResponse,
        dependencies=[Depends(require_api_key)],
        responses={
            200: {"model": FeedbackResponse, "description": "the same feedback was already recorded"},
            400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
            404: {"model": ErrorBody, "description": "unknown prediction_id"},
            409: {"model": ErrorBody, "description": "a different label was already recorded"},
            422: {"model": ErrorBody}, 503: {"model": ErrorBody},
        },
    )
    def feedback(request: Request, body: FeedbackRequest) -> JSONResponse:
        state = _state(request)
        try:
            result = _feedback(state, body)
        except ServingError as exc:
            state.metrics.feedback.labels(type(exc).__name__).inc()
            raise
        state.metrics.feedback.labels("recorded" if result.created else "duplicate").inc()
        out = FeedbackResponse(
            status="recorded" if result.created else "duplicate",
            prediction_id=result.prediction_id,
            model=result.model_name,
            label=result.label,
            received_at=result.received_at,
        )
        return JSONResponse(out.model_dump(mode="json"), status_code=201 if result.created else 200)

    @app.post(
        "/admin/reload",
        tags=["operations"],
        summary="check @champion now and hot-swap any model whose champion moved (admin key)",
        dependencies=[Depends(require_admin_key)],
        responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    def reload(request: Request) -> JSONResponse:
        state = _state(request)
        report = state.watcher.check(force=True)
        state.watcher.signal_others()
        ok = report["registry"]["reachable"] is not False
        if not ok:
            detail = report["registry"]["last_error"] or "tracking server unreachable"
            return _error_response(503, f"{detail}; nothing was reloaded")
        return JSONResponse(report)


# --------------------------------------------------------------------------- OpenAPI


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    state: ServingState = app.state.serving
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    header = state.settings.api_key_header
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": header, "description": "prediction and feedback key"},
        "AdminKey": {"type": "apiKey", "in": "header", "name": header, "description": "admin key"},
    }
    for path, scheme in (("/v1/feedback", "ApiKey"), ("/v1/models", "ApiKey"), ("/admin/reload", "AdminKey")):
        for op in schema.get("paths", {}).get(path, {}).values():
            op["security"] = [{scheme: []}]
    for model_cls in (PredictResponse, ErrorBody):
        js = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, d in js.pop("$defs", {}).items():
            schemas.setdefault(def_name, d)
        schemas[model_cls.__name__] = js
    for name, model in state.holder.models().items():
        record = model.schema.record_json_schema()
        record_name = record.get("title", "Record")
        schemas[record_name] = record
        ref = {"$ref": f"#/components/schemas/{record_name}"}
        body_schema = {
            "oneOf": [
                ref,
                {"type": "array", "items": ref, "minItems": 1, "maxItems": state.settings.max_batch_rows},
            ]
        }
        err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        op = {
            "tags": ["predictions"],
            "summary": f"score one {name} record or a list of them (v{model.version})",
            "operationId": f"predict_{quote(name, safe='')}",
            "security": [{"ApiKey": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema, "example": model.schema.example}},
            },
            "responses": {
                "200": {
                    "description": "one answer per record, in order",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}},
                },
                "400": {"description": "malformed JSON", **err},
                "401": {"description": "no API key", **err},
                "403": {"description": "wrong API key", **err},
                "413": {"description": "too many records or bytes", **err},
                "422": {"description": "records break the schema; errors lists each field", **err},
                "503": {"description": "model not loaded or prediction log full", **err},
            },
        }
        schema.setdefault("paths", {})[f"/v1/models/{quote(name, safe='')}/predict"] = {"post": op}
    app.openapi_schema = schema
    return schema


