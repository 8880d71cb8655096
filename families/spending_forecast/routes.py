"""``POST /v1/models/{name}/forecast`` and ``POST /v1/models/{name}/actuals``: the forecasting family's
answers from the served version's precomputed table, and its feedback (actual values per series and date).

An unknown series is a 404 naming it, not a forecast from history sent in the request: a series that
was never backtested has no calibrated interval and no lineage in the registered version, and the
answer stays a table lookup (p99 in the low milliseconds). Retrain with the series' history to add it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import to_json

from families.spending_forecast.actuals import actual_problems
from serving.errors import InvalidRecords, StoreUnavailable, UnknownSeries
from serving.http_errors import ErrorBody
from serving.state import require_api_key, state_of

router = APIRouter()

SeriesId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"series_id": "c00000/groceries", "horizon": 6, "interval": 0.8}]})

    series_id: SeriesId
    horizon: Annotated[int, Field(strict=True, ge=1, le=1000)] = Field(description="periods ahead, at most the model's horizon")
    interval: float = Field(0.8, description="the interval level of the bounds: 0.8 or 0.95")

    @field_validator("interval")
    @classmethod
    def _level(cls, v: float) -> float:
        if v not in (0.8, 0.95):
            raise ValueError("must be 0.8 or 0.95")
        return v


class Point(BaseModel):
    ds: str
    yhat: float
    yhat_lower: float
    yhat_upper: float


class ForecastResponse(BaseModel):
    model: str
    version: str
    series_id: str
    interval: float
    points: list[Point]


class Actual(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series_id: SeriesId
    ds: date = Field(description="the period's date, YYYY-MM-DD")
    y: Annotated[float, Field(allow_inf_nan=False)]


class ActualsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"actuals": [{"series_id": "c00000/groceries", "ds": "2026-11-01", "y": 412.5}]}]})

    actuals: Annotated[list[Actual], Field(min_length=1, max_length=10_000)]


class ActualsResponse(BaseModel):
    model: str
    recorded: int


def _forecast_model(request: Request, name: str):  # noqa: ANN202 - (ServedModel, ForecastModel)
    served = state_of(request).holder.get(name)
    fm = getattr(served.predictor, "forecast_model", None)
    if fm is None:
        raise InvalidRecords(f"model '{name}' is a {served.family} model; /forecast serves forecasting models "
                             f"(use /v1/models/{name}/predict)",
                             [{"field": "path.name", "message": "not a forecasting model", "type": "family"}])
    return served, fm


@router.post(
    "/v1/models/{name}/forecast",
    response_model=ForecastResponse,
    dependencies=[Depends(require_api_key)],
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    tags=["forecasts"],
)
async def forecast(name: str, body: ForecastRequest, request: Request) -> Response:
    served, fm = _forecast_model(request, name)
    if not fm.knows(body.series_id):
        raise UnknownSeries(f"series '{body.series_id}' is not in {name} v{served.version}; it forecasts the "
                            f"{len(fm.series_ids)} series it was trained on (retrain with this series' history to add it)")
    if body.horizon > fm.horizon:
        raise InvalidRecords(f"horizon {body.horizon} is beyond {name} v{served.version}'s horizon of {fm.horizon}",
                             [{"field": "body.horizon", "message": f"must be at most {fm.horizon}", "type": "less_than_equal"}])
    payload = {"model": name, "version": served.version, "series_id": body.series_id, "interval": body.interval,
               "points": fm.points(body.series_id, body.horizon, body.interval)}
    return Response(to_json(payload), media_type="application/json")


def _record_actuals(request: Request, name: str, rows: list[Actual]) -> int:
    import sqlalchemy as sa

    from families.spending_forecast import tables

    state = state_of(request)
    try:
        state.log.tables.ensure()
        now = datetime.now(UTC)
        values = {(name, a.series_id, a.ds): a.y for a in rows}  # the last value of a repeated key wins
        with state.engine.begin() as conn:
            keys = list(values)
            t = tables.forecast_actuals
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                conn.execute(sa.delete(t).where(sa.tuple_(t.c.model_name, t.c.series_id, t.c.ds).in_(chunk)))
                conn.execute(sa.insert(t), [
                    {"model_name": k[0], "series_id": k[1], "ds": k[2], "y": values[k], "received_at": now} for k in chunk
                ])
        return len(values)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreUnavailable("the feedback store (app database) is unreachable; retry the same request later") from exc


@router.post(
    "/v1/models/{name}/actuals",
    response_model=ActualsResponse,
    dependencies=[Depends(require_api_key)],
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    tags=["forecasts"],
)
async def actuals(name: str, body: ActualsRequest, request: Request) -> ActualsResponse:
    """Actual values per series and date: feedback for a forecasting model (idempotent; a repeat replaces).

    Each must fit its series (families/spending_forecast/actuals.py): ``ds`` on the model's frequency, from the
    series' first training period to the end of its forecast; ``y`` finite, not negative unless the model allows
    it, at most 10x the series' scale. A request with any misfit is a 422 listing each and records nothing."""
    served, fm = _forecast_model(request, name)
    unknown = sorted({a.series_id for a in body.actuals if not fm.knows(a.series_id)})
    if unknown:
        raise UnknownSeries(f"series {unknown[:3]} are not in {name} v{served.version}; send actuals for series it forecasts")
    problems = actual_problems(fm, body.actuals)
    if problems:
        shown = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InvalidRecords(f"actuals that do not fit {name} v{served.version}'s series: {shown}{more}; nothing was "
                             "recorded", problems)
    recorded = await anyio.to_thread.run_sync(_record_actuals, request, name, body.actuals)
    return ActualsResponse(model=name, recorded=recorded)
