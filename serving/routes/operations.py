"""Operations routes: ``/health``, ``/ready``, ``/metrics``, ``/version``, ``GET /v1/models`` and
``POST /admin/reload``."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ledgerline import __version__
from serving.http_errors import ErrorBody, error_response
from serving.routes.models import require_read_key
from serving.state import require_admin_key, state_of

router = APIRouter()

@router.get("/health", tags=["operations"], summary="the process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}

@router.get(
    "/ready",
    tags=["operations"],
    summary="every configured model is loaded (503 otherwise); details on registry and prediction log; "
    "`degraded` lists the components a model answers without (still 200: its answers say so)",
    responses={503: {"description": "not every model is loaded"}},
)
async def ready(request: Request) -> JSONResponse:
    state = state_of(request)
    models: dict[str, dict[str, object]] = {}
    degraded: list[str] = []
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
        if m is not None and m.status is not None:  # e.g. the anomaly family's profile store
            components = m.status()
            models[name]["components"] = components
            degraded += [f"{name}: {key.removesuffix('_available')} unavailable"
                         for key, value in components.items() if key.endswith("_available") and not value]
    ok = state.holder.ready
    body = {
        "ready": ok,
        "models": models,
        "degraded": degraded,
        "registry": state.watcher.registry_status(),
        "prediction_log": state.log.status(),
    }
    return JSONResponse(body, status_code=200 if ok else 503)

@router.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
         responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    state = state_of(request)
    log = state.log
    state.metrics.log_state(log.pending_rows, log.capacity, log.full, log.db_available)
    for model in state.holder.models().values():
        if model.status is not None:
            state.metrics.component_state(model.name, model.status())
    body = state.metrics.render()
    exporter = getattr(request.app.state, "monitoring_exporter", None)  # set by create_app (serving.monitoring_metrics)
    if exporter is not None:
        text = await anyio.to_thread.run_sync(exporter.render)
        body += text.encode()
    return Response(body, media_type=state.metrics.content_type)

@router.get("/version", tags=["operations"], summary="service, model and library versions")
async def version(request: Request) -> dict[str, Any]:
    state = state_of(request)
    return {
        "service": "ledgerline-serving",
        "version": __version__,
        "models": {n: (m.version if (m := state.holder.current(n)) else None) for n in state.holder.names},
        "libraries": state.versions,
        "started_at": state.started_at.isoformat(),
    }

@router.get(
    "/v1/models",
    tags=["predictions"],
    summary="the served models: loaded version, input fields, family, champion and challenger with headline metrics",
    dependencies=[Depends(require_read_key)],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)
def list_models(request: Request) -> dict[str, Any]:
    state = state_of(request)
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
    registry = {n: _registry_overview(state.platform, n) for n in state.holder.names}
    return {"models": out, "registry": registry}


def _registry_overview(platform: Any, name: str) -> dict[str, Any]:
    """Family, champion and challenger with headline metrics; an error string when the registry cannot say."""
    from serving import management

    try:
        return management.overview(platform, name)
    except Exception as exc:  # the registry away must not take the list of served models with it
        return {"error": str(exc).splitlines()[0][:300]}

@router.post(
    "/admin/reload",
    tags=["operations"],
    summary="check @champion now and hot-swap any model whose champion moved (admin key)",
    dependencies=[Depends(require_admin_key)],
    responses={
        202: {"description": "the check did not finish within reload_wait_seconds; it goes on, see /ready"},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
def reload(request: Request) -> JSONResponse:
    state = state_of(request)
    state.watcher.signal_others()
    wait = state.settings.reload_wait_seconds
    report = state.watcher.reload(wait)
    if report is None:  # still checking or loading: the watcher carries on, /ready shows the outcome
        return JSONResponse(
            {
                "status": "reloading",
                "detail": f"the champion check did not finish within {wait:g}s; it goes on in the background",
                "status_url": "/ready",
            },
            status_code=202,
        )
    ok = report["registry"]["reachable"] is not False
    if not ok:
        detail = report["registry"]["last_error"] or "tracking server unreachable"
        return error_response(503, f"{detail}; nothing was reloaded")
    return JSONResponse(report)
