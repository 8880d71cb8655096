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

from serving import store
from serving.errors import InvalidRecords, ServingError, StoreUnavailable, UnknownPrediction
from serving.http_errors import ErrorBody, read_body
from serving.state import ServingState, require_api_key, state_of

router = APIRouter()

#: Allowed feedback labels per family, normalised to what the feedback table stores.
FEEDBACK_LABELS: dict[str, dict[Any, str]] = {"credit-risk": {0: "0", 1: "1", "0": "0", "1": "1"}}



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
    state.metrics.feedback.labels("recorded" if result.created else "duplicate").inc()
    out = FeedbackResponse(
        status="recorded" if result.created else "duplicate",
        prediction_id=result.prediction_id,
        model=result.model_name,
        label=result.label,
        received_at=result.received_at,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if result.created else 200)
