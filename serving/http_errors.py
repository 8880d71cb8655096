"""Domain errors become HTTP statuses and JSON error bodies here, and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from serving.errors import (
    AuthError,
    BatchTooLarge,
    BodyTimeout,
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
    UnknownSeries,
    UnsupportedMediaType,
)
from serving.state import state_of

logger = logging.getLogger(__name__)

STATUS: dict[type[ServingError], int] = {
    MalformedRequest: 400,
    UnsupportedMediaType: 415,
    InvalidRecords: 422,
    BatchTooLarge: 413,
    BodyTimeout: 408,
    UnknownModel: 404,
    UnknownPrediction: 404,
    UnknownSeries: 404,
    FeedbackConflict: 409,
    ModelNotReady: 503,
    ModelLoadError: 503,
    RegistryUnavailable: 503,
    LogBufferFull: 503,
    StoreUnavailable: 503,
}
RETRY_AFTER = {ModelNotReady: "5", LogBufferFull: "5", StoreUnavailable: "5", RegistryUnavailable: "30"}


class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


def status_for(exc: ServingError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail}
    if errors is not None:
        content["errors"] = errors
    return JSONResponse(content, status_code=status, headers=headers)


def _endpoint(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


async def serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    state_of(request).metrics.errors.labels(_endpoint(request), type(exc).__name__).inc()
    if isinstance(exc, AuthError):
        if exc.missing:
            header = state_of(request).settings.api_key_header
            return error_response(401, str(exc), headers={"WWW-Authenticate": f'ApiKey header="{header}"'})
        return error_response(403, str(exc))
    status = status_for(exc)
    retry = next((v for k, v in RETRY_AFTER.items() if isinstance(exc, k)), None)
    errors = exc.errors if isinstance(exc, InvalidRecords) else None
    headers = {"Retry-After": retry} if retry else None
    if isinstance(exc, BodyTimeout | BatchTooLarge):  # the rest of the body may still be on its way: do not wait for it
        headers = {**(headers or {}), "Connection": "close"}
    return error_response(status, str(exc), errors, headers)


async def read_body(request: Request, limit: int, timeout: float) -> bytes | None:
    """The request body, refused with 413 above ``limit`` bytes and 408 after ``timeout`` seconds.

    None when the client hung up before sending it all (logged as one line at INFO: nobody is
    left to answer, and a hang-up is not a server error).
    """
    import anyio
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BatchTooLarge(f"the request body has {declared} bytes; the limit is {limit}: send less")
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BatchTooLarge(f"the request body is larger than {limit} bytes: send less")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"the request body did not arrive within {timeout:g}s ({size} bytes received); send it at once"
        ) from None
    except ClientDisconnect:
        logger.info("client %s hung up while sending %s %s", request.client, request.method, request.url.path)
        return None
    return b"".join(chunks)


async def request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    state_of(request).metrics.errors.labels(_endpoint(request), "RequestValidationError").inc()
    errs = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errs):
        return error_response(400, "the request body is not valid JSON; send a JSON object")
    out = []
    for e in errs[:50]:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc) or "body", "message": e.get("msg", ""), "type": e.get("type", "")})
    summary = "; ".join(f"{o['field']}: {o['message']}" for o in out[:3])
    return error_response(422, f"the request does not match the schema: {summary}", out)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    try:
        state_of(request).metrics.errors.labels(_endpoint(request), "internal").inc()
    except Exception:  # metrics must not hide the original problem
        pass
    return error_response(500, "internal error; the server log has the details")


