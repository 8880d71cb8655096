"""``POST /v1/feedback``: the actual outcome of a prediction, possibly days later."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from features.labels import LabelCodec, LabelError, OutcomeCodec
from serving import store
from serving.errors import InvalidRecords, ServingError, StoreUnavailable, UnknownPrediction
from serving.http_errors import ErrorBody, read_body
from serving.state import ServingState, could_be_pending, require_api_key, state_of
from serving.wal import oldest_segment_ms

router = APIRouter()

#: A feedback label as JSON carries it: any scalar, passed to the model's label codec unchanged (a number
#: stays a number: a regression codec reads 123.4; a binary codec reads 1/0 and its labels' names).
LabelValue = (
    Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
)


class FeedbackRequest(BaseModel):
    """The actual outcome of a prediction, possibly days later."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"prediction_id": "0b6f1c3e-8d1a-4a57-9a8e-2f1d7c9b1e42", "label": 1}]})

    prediction_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=36, pattern=r"^[0-9A-Za-z-]+$")] = Field(
        description="the prediction_id a /predict answer returned"
    )
    label: LabelValue = Field(
        description=(
            "the outcome in the model's own terms, as the model's label codec reads it: a label value of its "
            "training data's target (e.g. 'bad' or 'good'), or 1 for the positive class (the event the model "
            "scores, e.g. a default) and 0 for the negative class (stored as '1' or '0'; where the training data "
            "itself uses 0/1, those keep the data's meaning); for a categorisation model the correct category's "
            "name; for a regression model the realised value as a number. Any value the codec does not accept is "
            "refused with 422 listing the allowed values"
        )
    )


class FeedbackResponse(BaseModel):
    status: Literal["recorded", "duplicate", "pending"]
    prediction_id: str
    model: str | None = Field(description="null while pending (the prediction's row is not in the database yet)")
    label: str = Field(description="the stored outcome, in the codec's canonical form: '1' = the positive class, "
                       "'0' = the negative class; a categorisation model's: the category; a regression model's: the value")
    received_at: datetime


def _normalise_label(codec: OutcomeCodec, label: LabelValue) -> str:
    """The user's outcome in the codec's canonical form (binary: '1' positive, '0' negative); 422 otherwise."""
    try:
        return codec.accept(label)
    except LabelError as exc:
        raise InvalidRecords(
            str(exc), [{"field": "body.label", "message": f"must be one of {codec.describe()}", "type": "label"}]
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
            model_name = store.find_prediction(state.engine, pid)
        elif _could_be_pending(state, pid):
            # possibly in another worker's buffer (or log): never refused, kept as pending when still missing
            if state.settings.feedback_wait_seconds > 0:
                time.sleep(state.settings.feedback_wait_seconds)
            model_name = store.find_prediction(state.engine, pid)
            if model_name is None:
                return store.record_pending_feedback(state.engine, pid, _pending_label(state, req.label))
    if model_name is None:
        raise UnknownPrediction(
            f"no prediction with id '{pid}' was logged; send the prediction_id that a /predict answer returned"
        )
    current = state.holder.current(model_name)
    # a model no longer served: only the canonical 0/1 are unambiguous
    codec: OutcomeCodec = current.label_codec if current is not None else LabelCodec.canonical_only()
    label = _normalise_label(codec, req.label)
    result = store.record_feedback(state.engine, pid, label)
    if current is not None and current.on_feedback is not None and result.created:
        current.on_feedback(pid, label)  # e.g. a categorisation correction becomes a rule at once
    return result


def _could_be_pending(state: ServingState, pid: str) -> bool:
    wal = state.log.wal
    return could_be_pending(
        pid,
        window_seconds=state.settings.feedback_pending_window_seconds,
        oldest_log_ms=oldest_segment_ms(wal.directory if wal is not None else None),
    )


def _pending_label(state: ServingState, label: LabelValue) -> str:
    """The canonical label of a prediction whose model is not known yet.

    Every served model's codec must read the label the same way; otherwise the client is asked
    to retry in a moment (503, when the prediction's row will be in the database), never told 404.
    """
    codecs: list[OutcomeCodec] = [m.label_codec for m in (state.holder.current(n) for n in state.holder.names) if m is not None]
    if not codecs:
        codecs = [LabelCodec.canonical_only()]
    readings: set[str] = set()
    for codec in codecs:
        try:
            readings.add(codec.accept(label))
        except LabelError:
            continue
    if not readings:
        return _normalise_label(codecs[0], label)  # 422 listing the allowed values
    if len(readings) > 1 or len(readings) == 1 and len(codecs) > 1 and not all(_reads(c, label) for c in codecs):
        raise StoreUnavailable(
            "this prediction was answered moments ago and its record is not in the database yet; "
            "retry the same request in a few seconds"
        )
    return readings.pop()


def _reads(codec: OutcomeCodec, label: LabelValue) -> bool:
    try:
        codec.accept(label)
    except LabelError:
        return False
    return True



def _feedback_request_body() -> dict[str, Any]:
    """The OpenAPI request body: the route reads the body itself (after the key check), so FastAPI
    does not document it from a parameter."""
    schema = FeedbackRequest.model_json_schema()
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@router.post(
    "/v1/feedback",
    tags=["predictions"],
    summary="record the actual outcome of a prediction (idempotent)",
    status_code=201,
    response_model=FeedbackResponse,
    dependencies=[Depends(require_api_key)],
    openapi_extra={"requestBody": _feedback_request_body()},
    responses={
        200: {"model": FeedbackResponse, "description": "the same feedback was already recorded"},
        202: {"model": FeedbackResponse, "description": "kept as pending: the prediction was answered moments ago and "
              "its log record is not in the database yet; attached to it when it is"},
        400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
        404: {"model": ErrorBody, "description": "unknown prediction_id"},
        408: {"model": ErrorBody, "description": "the body did not arrive in time"},
        413: {"model": ErrorBody, "description": "the body is larger than feedback_max_body_bytes"},
        409: {"model": ErrorBody, "description": "a different label was already recorded"},
        422: {"model": ErrorBody}, 503: {"model": ErrorBody},
    },
)
async def feedback(request: Request) -> Response:
    # the key was checked by the dependency; only now is the body read, with a size cap and a deadline
    state = state_of(request)
    raw = await read_body(request, state.settings.feedback_max_body_bytes, state.settings.body_timeout_seconds)
    if raw is None:  # the client hung up mid-upload
        return Response(status_code=400)
    try:
        body = FeedbackRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)[:50]]
        ) from None
    try:
        result = await anyio.to_thread.run_sync(_feedback, state, body)
    except ServingError as exc:
        state.metrics.feedback.labels(type(exc).__name__).inc()
        raise
    status: Literal["recorded", "duplicate", "pending"] = (
        "pending" if result.pending else "recorded" if result.created else "duplicate"
    )
    state.metrics.feedback.labels(status).inc()
    out = FeedbackResponse(
        status=status,
        prediction_id=result.prediction_id,
        model=result.model_name or None,
        label=result.label,
        received_at=result.received_at,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=202 if result.pending else 201 if result.created else 200)
