"""Model management: ``GET /v1/models/{name}``, ``GET /v1/models/{name}/performance`` (a read or
the admin key) and ``POST /v1/models/{name}/promote|rollback|retrain`` (the admin key; every
write lands in the promotion ledger or in Airflow with who asked and why).
``GET /v1/models`` (in :mod:`serving.routes.operations`) lists the served models with the same
champion/challenger overview.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from serving import management
from serving.http_errors import ErrorBody, error_response
from serving.management import Actor, ManagementError
from serving.state import principal_of, require_admin_key, state_of

router = APIRouter(tags=["models"])

READ_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}
}


def require_read_key(request: Request) -> None:
    """An API key or the admin key."""
    principal_of(request, "read", "reading model information")


def _fail(exc: ManagementError) -> JSONResponse:
    return error_response(management.STATUS_OF_KIND[exc.kind], str(exc))


class PromoteBody(BaseModel):
    version: str = Field(min_length=1, max_length=32, pattern=r"^[0-9]+$", description="the registered version")
    reason: str = Field(min_length=10, max_length=2000, description="why (written to the promotion ledger)")
    requested_by: str = Field(min_length=1, max_length=200, description="who asks (written to the ledger)")
    override: bool = Field(False, description="promote even when the version fails the gate's absolute floors")


class RollbackBody(BaseModel):
    reason: str | None = Field(None, max_length=2000)
    requested_by: str = Field(min_length=1, max_length=200)


class RetrainBody(BaseModel):
    note: str | None = Field(None, max_length=2000, description="shown on the Airflow DAG run")
    requested_by: str = Field(min_length=1, max_length=200)


@router.get("/v1/models/{name}", summary="versions, aliases, metrics, lineage and gate decisions of a model",
            dependencies=[Depends(require_read_key)], responses=READ_ERRORS)
def model_detail(name: str, request: Request) -> Any:
    try:
        return management.detail(state_of(request).platform, name)
    except ManagementError as exc:
        return _fail(exc)


@router.get("/v1/models/{name}/performance", summary="latest monitoring results and decisions, and their history",
            dependencies=[Depends(require_read_key)], responses=READ_ERRORS)
def model_performance(name: str, request: Request, limit: int = Query(50, ge=1, le=1000)) -> Any:
    try:
        return management.performance(state_of(request).platform, name, limit)
    except ManagementError as exc:
        return _fail(exc)


def _ops(request: Request) -> management.ModelManagement:
    ops = state_of(request).management
    if ops is None:
        raise ManagementError(
            "model management is not available in this process (the app was built without it); "
            "run the API with `ledgerline serve`", "unavailable")
    return ops


@router.post("/v1/models/{name}/promote", summary="move @champion to a version (admin key; gate floors unless override)",
             dependencies=[Depends(require_admin_key)], responses=WRITE_ERRORS)
def promote(name: str, body: PromoteBody, request: Request) -> Any:
    try:
        row = _ops(request).promote(name, body.version, reason=body.reason, override=body.override,
                                    actor=Actor(body.requested_by, "admin key"))
    except ManagementError as exc:
        return _fail(exc)
    state_of(request).watcher.signal_others()
    return {"status": "promoted", "ledger": management.jsonable_row(row)}


@router.post("/v1/models/{name}/rollback", summary="move @champion back to the previous champion (admin key)",
             dependencies=[Depends(require_admin_key)], responses=WRITE_ERRORS)
def rollback(name: str, body: RollbackBody, request: Request) -> Any:
    try:
        row = _ops(request).rollback(name, reason=body.reason, actor=Actor(body.requested_by, "admin key"))
    except ManagementError as exc:
        return _fail(exc)
    state_of(request).watcher.signal_others()
    return {"status": "rolled back", "ledger": management.jsonable_row(row)}


@router.post("/v1/models/{name}/retrain", summary="trigger the family's retrain DAG in Airflow, reason manual (admin key)",
             dependencies=[Depends(require_admin_key)], responses=WRITE_ERRORS, status_code=202)
def retrain(name: str, body: RetrainBody, request: Request) -> Any:
    try:
        run = _ops(request).retrain(name, note=body.note, actor=Actor(body.requested_by, "admin key"))
    except ManagementError as exc:
        return _fail(exc)
    return JSONResponse({"status": "triggered", **run}, status_code=202)
