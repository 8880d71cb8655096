"""``POST /v1/models/{name}/predict``: a plain Starlette route on the hot path.

It reads the body bytes itself and hands them to pydantic-core (no ``json.loads``, no
FastAPI body machinery), answers with bytes encoded by pydantic-core, and only appends
one entry to the prediction log's buffer. Its OpenAPI description is generated per
served model from that model's request schema (:mod:`serving.openapi`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import numpy as np
from fastapi import Request
from fastapi.responses import Response
from pydantic_core import to_json

from serving.errors import AuthError, InvalidRecords, ServingError, UnsupportedMediaType
from serving.http_errors import read_body, status_for
from serving.model import ServedModel, predict
from serving.state import new_prediction_ids, principal_of, state_of
from serving.store import LogEntry

#: Bodies above this size are parsed and scored in a worker thread so small requests keep flowing
#: (validation work is bounded by the body's size, see :meth:`serving.schema.RecordSchema.parse`).
INLINE_BODY_BYTES = 16 * 1024


_EXPLAIN = {"true": True, "1": True, "false": False, "0": False}


def explain_param(request: Request) -> bool:
    """``?explain=false`` leaves the explanations (reason codes, reasons) out of the answers: cheaper."""
    raw = request.query_params.get("explain")
    if raw is None:
        return True
    value = _EXPLAIN.get(raw.strip().lower())
    if value is None:
        raise InvalidRecords(
            f"query parameter explain must be true or false, not {raw[:40]!r}",
            [{"field": "explain", "message": "must be true or false", "type": "bool_parsing"}],
        )
    return value


def check_json_body(request: Request) -> None:
    """The body must be declared as JSON (``application/json``, or ``application/<x>+json``); a request
    without a Content-Type is read as JSON, as FastAPI's JSON routes read it. Anything else is a 415."""
    raw = request.headers.get("content-type")
    if raw is None:
        return
    media = raw.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"Content-Type {media or '(empty)'} is not accepted here: send the records as JSON with Content-Type "
        "application/json (a file of rows goes to POST /v1/models/{name}/batches as text/csv or Parquet)"
    )


def _score(body: bytes, model: ServedModel, t0: float, explain: bool = True) -> tuple[LogEntry, np.ndarray, bytes]:
    """Validate, predict, encode the answer and the log rows: everything CPU-bound of a request."""
    records = model.schema.parse(body)
    answers, scores = predict(records, model, explain=explain)
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


_LIMITER: anyio.CapacityLimiter | None = None


def _score_limiter() -> anyio.CapacityLimiter:
    """One large request scored at a time in this process (created in the event loop on first use)."""
    global _LIMITER
    if _LIMITER is None:
        _LIMITER = anyio.CapacityLimiter(1)
    return _LIMITER


async def predict_endpoint(request: Request) -> Response:
    t0 = time.perf_counter()
    state = state_of(request)
    name = request.path_params["name"]
    model: ServedModel | None = None
    try:
        principal_of(request, "predict", "predictions")
        model = state.holder.get(name)
        explain = explain_param(request)
        check_json_body(request)
        body = await read_body(request, state.settings.max_body_bytes, state.settings.body_timeout_seconds)
        if body is None:  # the client hung up mid-upload: nobody to answer
            return Response(status_code=400)
        if len(body) > INLINE_BODY_BYTES:
            # scored in a worker thread, one at a time per process: CPU-bound threads only contend for the GIL
            entry, scores, payload = await anyio.to_thread.run_sync(_score, body, model, t0, explain,
                                                                    limiter=_score_limiter())
            # in another thread, so a full buffer (the writer behind) can make it wait briefly instead of 503
            seq = await anyio.to_thread.run_sync(state.log.record, entry, state.settings.log_full_wait_seconds)
            durable = state.log.durable(seq)
            if durable is not None:
                await durable
        else:
            entry, scores, payload = _score(body, model, t0, explain)
            durable = state.log.durable(state.log.record(entry))
            if durable is not None:  # group commit: the answer leaves once its log record is on disk
                await durable
        seconds = time.perf_counter() - t0
    except ServingError as exc:
        status = 401 if isinstance(exc, AuthError) and exc.missing else 403 if isinstance(exc, AuthError) else status_for(exc)
        if model is not None:
            state.metrics.requests.labels(model.name, model.version, str(status)).inc()
        raise
    state.metrics.observed(model.name, model.version, seconds, scores, model.score_range)
    if model.status is not None:  # e.g. the profile store: every worker keeps its own gauges current
        state.metrics.component_state(model.name, model.status())
    return Response(payload, media_type="application/json")
