"""The checks an actual value (``POST /v1/models/{name}/actuals``) passes before it is stored: it must fit
the series as the served version knows it, or monitoring would score forecasts against nonsense.

Per actual ``{series_id, ds, y}``:

- **grid**: ``ds`` is on the model's frequency (``MS``: the first of a month; ``W``: the weekday the
  series' weeks fall on; ``D``: any date).
- **horizon**: ``ds`` is not before the series' first training period and not after the last period
  of its forecast (the version's horizon).
- **range**: ``y`` is finite; not negative unless the model was trained with ``allow_negative``; and
  ``|y|`` is at most :data:`RANGE_FACTOR` times the series' scale, the largest of: its largest absolute
  training value, the upper 95 % bound of its forecast, and 1. Ten times what the series ever did or
  was forecast to do is beyond any plausible period and typical of a unit error (cents for
  currency units) or a placeholder such as 1e308.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from families.spending_forecast.model import ForecastModel

#: ``|y|`` above this many times the series' scale is refused (see the module's docstring)
RANGE_FACTOR = 10.0
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class SeriesBounds:
    start: date  # the first training period
    end: date  # the last forecast period
    weekday: int  # the weekday of its periods (weekly series)
    limit: float  # the largest |y| accepted


def _shift(day: date, periods: int, freq: str) -> date:
    if freq == "MS":
        months = day.year * 12 + day.month - 1 - periods
        return date(months // 12, months % 12 + 1, 1)
    return day - timedelta(days=periods * (7 if freq == "W" else 1))


def series_bounds(model: ForecastModel, series_id: str, lineage: Any = None) -> SeriesBounds:
    """The bounds of one series the model knows (``lineage``: the model's lineage indexed by series_id)."""
    import numpy as np
    import pandas as pd

    model.knows(series_id)  # builds the lookup index
    assert model._index is not None
    s, e = model._index[series_id]
    rows = model.table.iloc[s:e]
    ds = pd.DatetimeIndex(rows["ds"])
    first, last = ds.min().date(), ds.max().date()
    lin = (lineage if lineage is not None else model.lineage.set_index("series_id")).loc[series_id]
    seen = [float(np.nanmax(np.abs(rows["upper_95"].to_numpy(dtype=float)))), 1.0]
    if "y_max" in lin.index:
        seen += [abs(float(lin["y_min"])), abs(float(lin["y_max"]))]
    else:  # a version trained before the range was kept: its holdout's values
        held = model.holdout.loc[model.holdout["series_id"] == series_id, "y"].to_numpy(dtype=float)
        seen += [float(np.abs(held).max())] if len(held) else []
    scale = max(v for v in seen if math.isfinite(v))
    return SeriesBounds(start=_shift(first, int(lin["length"]), model.freq), end=last, weekday=first.weekday(),
                        limit=RANGE_FACTOR * scale)


def actual_problems(model: ForecastModel, actuals: Sequence[Any]) -> list[dict[str, str]]:
    """One entry ``{field, message, type}`` per broken rule (at most 50); each actual has ``series_id``,
    ``ds`` (a date) and ``y``; its series is known to the model."""
    allow_negative = bool(model.meta.get("allow_negative", False))
    lineage = model.lineage.set_index("series_id")
    known: dict[str, SeriesBounds] = {}
    out: list[dict[str, str]] = []
    for i, a in enumerate(actuals):
        if len(out) >= 50:
            break
        b = known.get(a.series_id)
        if b is None:
            b = known[a.series_id] = series_bounds(model, a.series_id, lineage)
        at = f"body.actuals.{i}"
        if model.freq == "MS" and a.ds.day != 1:
            out.append({"field": f"{at}.ds", "type": "off_grid",
                        "message": f"{a.ds} is not on the model's monthly grid: use the first of the month "
                                   f"({a.ds.replace(day=1)})"})
        elif model.freq == "W" and a.ds.weekday() != b.weekday:
            out.append({"field": f"{at}.ds", "type": "off_grid",
                        "message": f"{a.ds} is a {_WEEKDAYS[a.ds.weekday()]}; the weeks of series '{a.series_id}' "
                                   f"fall on {_WEEKDAYS[b.weekday]}s"})
        elif a.ds < b.start:
            out.append({"field": f"{at}.ds", "type": "before_series",
                        "message": f"{a.ds} is before series '{a.series_id}' begins ({b.start}, its first training "
                                   "period)"})
        elif a.ds > b.end:
            out.append({"field": f"{at}.ds", "type": "beyond_horizon",
                        "message": f"{a.ds} is after the last forecast period of series '{a.series_id}' ({b.end}); "
                                   "send actuals up to the forecast horizon"})
        y = float(a.y)
        if not math.isfinite(y):
            out.append({"field": f"{at}.y", "type": "finite_number", "message": "must be a finite number"})
        elif y < 0 and not allow_negative:
            out.append({"field": f"{at}.y", "type": "negative",
                        "message": f"{y:g} is negative; series '{a.series_id}' cannot be (the model was trained "
                                   "without allow_negative)"})
        elif abs(y) > b.limit:
            out.append({"field": f"{at}.y", "type": "out_of_range",
                        "message": f"{y:g} is beyond {RANGE_FACTOR:g} times anything series '{a.series_id}' did or "
                                   f"was forecast to do (|y| at most {b.limit:.6g}); check the units"})
    return out


__all__ = ["RANGE_FACTOR", "SeriesBounds", "actual_problems", "series_bounds"]
