"""Long-format time series (series_id, ds, y): the series contract, its checks and the seeded generators.

A series dataset's spec names three roles (``series``, ``timestamp``, ``value``) and carries a
``series`` block: the frequency (``MS`` month starts, ``W`` weeks, ``D`` days), the maximum
horizon a model forecasts, the minimum length of a series and whether values may be negative
(spending may not, cash flow may). :func:`check_series` enforces it before anything is written,
with one message naming the problem and the fix; the GX suite (expectations/suite.py) carries
the same rules as expectations, evaluated on :func:`series_check_columns`.

The generators are deterministic for a seed: monthly spending per customer and category (trend,
yearly seasonality, holiday peaks, an income-linked level, noise, some short or intermittent
series, a few structural breaks), the same weekly on a chosen weekday, and daily cash flow with
pay-day cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ledgerline.errors import DataError, SpecError

FREQS = ("MS", "W", "D")
#: the seasonal period per frequency (a year of months, a year of weeks, a week of days)
SEASON = {"MS": 12, "W": 52, "D": 7}
MAX_HORIZON = {"MS": 36, "W": 104, "D": 366}
SERIES_ID, DS, Y = "series_id", "ds", "y"
STEP_COLUMN = "__step__"  # periods since the series' previous row (GX: exactly 1)
LENGTH_COLUMN = "__series_length__"  # rows of the row's series (GX: at least min_length)
END = pd.Timestamp("2026-10-01")
_GRID = {"MS": "month starts at midnight", "W": "one date per week at midnight", "D": "dates at midnight"}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CATEGORIES = ("groceries", "dining", "travel", "utilities", "shopping", "entertainment")


@dataclass(frozen=True)
class SeriesSpec:
    series: str
    timestamp: str
    value: str
    freq: str
    horizon: int
    min_length: int
    allow_negative: bool

    @property
    def season(self) -> int:
        return SEASON[self.freq]

    @property
    def backtest_horizon(self) -> int:
        """The window each backtest origin scores: the horizon, at most one season."""
        return min(self.horizon, self.season)


def default_min_length(freq: str, horizon: int) -> int:
    """A season to learn from plus one backtest window."""
    return SEASON[freq] + min(horizon, SEASON[freq])


def check_horizon(freq: str, horizon: int) -> None:
    if freq not in FREQS:
        raise SpecError(f"--freq {freq!r} is not supported; use one of {list(FREQS)} (month starts, weeks, days)")
    if not isinstance(horizon, int) or not 1 <= horizon <= MAX_HORIZON[freq]:
        raise SpecError(
            f"--horizon {horizon} is out of range for --freq {freq}; use 1 to {MAX_HORIZON[freq]} periods"
        )


def series_block(freq: str, horizon: int, *, min_length: int | None = None, allow_negative: bool = False) -> dict[str, Any]:
    check_horizon(freq, horizon)
    return {
        "freq": freq,
        "horizon": int(horizon),
        "min_length": int(min_length if min_length is not None else default_min_length(freq, horizon)),
        "allow_negative": bool(allow_negative),
    }


def series_spec_of(spec: Any) -> SeriesSpec:
    """The series contract of a DatasetSpec (SpecError when it is not a series spec)."""
    block: Mapping[str, Any] | None = getattr(spec, "series", None)
    roles = getattr(spec, "roles", {}) or {}
    if not block or not all(r in roles for r in ("series", "timestamp", "value")):
        raise SpecError(
            f"spec '{spec.name}' is not a series spec: it needs roles series, timestamp and value and a "
            "'series: {freq, horizon}' block (ledgerline train spending-forecast --series-column ... writes one)"
        )
    freq, horizon = str(block.get("freq")), block.get("horizon")
    check_horizon(freq, horizon)  # type: ignore[arg-type]
    return SeriesSpec(
        series=roles["series"],
        timestamp=roles["timestamp"],
        value=roles["value"],
        freq=freq,
        horizon=int(horizon),  # type: ignore[arg-type]
        min_length=int(block.get("min_length") or default_min_length(freq, int(horizon))),  # type: ignore[arg-type]
        allow_negative=bool(block.get("allow_negative", False)),
    )


def period_index(ds: pd.Series | pd.DatetimeIndex, freq: str) -> np.ndarray:
    """An integer per timestamp, consecutive periods differing by exactly 1 (any other step is a gap)."""
    d = pd.DatetimeIndex(ds)
    if d.tz is not None:
        d = d.tz_convert("UTC").tz_localize(None)
    if freq == "MS":
        return np.asarray(d.year * 12 + d.month - 1, dtype=np.int64)
    days = np.asarray(d.values.astype("datetime64[D]").astype(np.int64))
    return days // 7 if freq == "W" else days


def on_grid(ds: pd.Series, freq: str) -> pd.Series:
    """True where a timestamp sits on the frequency's grid (month starts, midnight; weeks on one weekday)."""
    d = pd.DatetimeIndex(ds)
    midnight = (d.hour == 0) & (d.minute == 0) & (d.second == 0)
    if freq == "MS":
        return pd.Series(midnight & (d.day == 1), index=ds.index)
    return pd.Series(midnight, index=ds.index)


def check_series(frame: pd.DataFrame, ss: SeriesSpec) -> None:
    """The series contract, checked before anything is written; DataError naming the problem and the fix."""
    s, t, v = ss.series, ss.timestamp, ss.value
    if frame[s].isna().any():
        raise DataError(f"column '{s}' (series id) has empty values; give every row a series id")
    if frame[t].isna().any():
        raise DataError(f"column '{t}' (time) has empty values; give every row a date")
    if frame[v].isna().any():
        bad = frame.loc[frame[v].isna(), s].astype(str).unique()[:3].tolist()
        raise DataError(f"column '{v}' has empty values (series {bad}); fill them (0 for no spending) or drop the rows")
    grid = on_grid(frame[t], ss.freq)
    if not grid.all():
        ex = frame.loc[~grid, [s, t]].head(1).to_numpy()[0]
        when = pd.Timestamp(ex[1])
        shown = when.date() if when == when.normalize() else when.isoformat()  # a time of day is the problem: show it
        raise DataError(
            f"series '{ex[0]}' has date {shown} that is not on the {ss.freq} grid ({_GRID[ss.freq]}); "
            f"aggregate to one row per period or pass the --freq the data has"
        )
    if ss.freq == "W":
        weekdays = pd.Series(pd.DatetimeIndex(frame[t]).weekday, index=frame.index)
        if weekdays.nunique() > 1:
            anchor = int(weekdays.mode().iloc[0])  # the weekday most weeks fall on
            row = frame.loc[weekdays != anchor].iloc[0]
            day = pd.Timestamp(row[t])
            raise DataError(
                f"series '{row[s]}' has weekly date {day.date()} on a {day.day_name()} while the other weeks fall on "
                f"{_WEEKDAYS[anchor]}s; put every week on the same weekday (e.g. resample to W-{_WEEKDAYS[anchor][:3].upper()})"
            )
    if not ss.allow_negative and (frame[v] < 0).any():
        bad = frame.loc[frame[v] < 0, s].astype(str).unique()[:3].tolist()
        raise DataError(
            f"series {bad} have negative values; spending cannot be negative: fix the data, or declare "
            "'allow_negative: true' in the spec's series block for flows such as cash flow"
        )
    p = pd.Series(period_index(frame[t], ss.freq), index=frame.index)
    dup = pd.DataFrame({"s": frame[s], "p": p}).duplicated()
    if dup.any():
        row = frame.loc[dup].iloc[0]
        raise DataError(
            f"series '{row[s]}' has more than one row at {pd.Timestamp(row[t]).date()}; "
            f"keep one value per series and period (sum or deduplicate them)"
        )
    order = np.lexsort((p.to_numpy(), frame[s].astype(str).to_numpy()))
    ids = frame[s].astype(str).to_numpy()[order]
    per = p.to_numpy()[order]
    same = ids[1:] == ids[:-1]
    step = per[1:] - per[:-1]
    gaps = np.flatnonzero(same & (step != 1))
    if len(gaps):
        i = gaps[0]
        ts = pd.DatetimeIndex(frame[t].to_numpy()[order])
        raise DataError(
            f"series '{ids[i]}' has a gap: {step[i] - 1} missing period(s) between {ts[i].date()} and "
            f"{ts[i + 1].date()} at frequency {ss.freq}; add the missing rows (0 for no spending) or drop the series"
        )
    counts = pd.Series(ids).value_counts()
    short = counts[counts < ss.min_length]
    if len(short):
        name, n = short.index[0], int(short.iloc[0])
        more = f" and {len(short) - 1} more" if len(short) > 1 else ""
        raise DataError(
            f"series '{name}'{more} has only {n} values; forecasting at --freq {ss.freq} needs at least "
            f"{ss.min_length} per series (a season and a backtest window); drop short series or give more history"
        )


def series_check_columns(frame: pd.DataFrame, ss: SeriesSpec) -> pd.DataFrame:
    """The derived columns the GX suite checks: periods since the series' previous row, the series' length."""
    p = pd.Series(period_index(frame[ss.timestamp], ss.freq), index=frame.index)
    key = frame[ss.series].astype(str)
    ordered = pd.DataFrame({"k": key, "p": p}).sort_values(["k", "p"], kind="stable")
    step = ordered.groupby("k", sort=False)["p"].diff()
    out = pd.DataFrame(index=frame.index)
    out[STEP_COLUMN] = step.reindex(frame.index)
    out[LENGTH_COLUMN] = key.map(key.value_counts()).astype("int64")
    return out


def sort_series(frame: pd.DataFrame, ss: SeriesSpec) -> pd.DataFrame:
    return frame.sort_values([ss.series, ss.timestamp], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- generators


def series_dataset_spec(name: str, *, freq: str = "MS", horizon: int = 12, allow_negative: bool = False) -> Any:
    """The spec of generated long-format data (series_id, ds, y)."""
    from features.spec import ColumnSpec, DatasetSpec

    block = series_block(freq, horizon, allow_negative=allow_negative)
    return DatasetSpec(
        name=name,
        target=None,
        positive_label=None,
        columns=(
            ColumnSpec(SERIES_ID, "categorical"),
            ColumnSpec(DS, "datetime"),
            ColumnSpec(Y, "numeric", min=None if allow_negative else 0.0),
        ),
        min_rows=block["min_length"],
        roles={"series": SERIES_ID, "timestamp": DS, "value": Y},
        series=block,
    )


# the month-of-year shape of each category (index 0 = January), and its December holiday peak
_SHAPES: dict[str, tuple[np.ndarray, float]] = {
    "groceries": (np.array([0, -2, 0, 0, 1, 1, 2, 2, 0, 0, 3, 0]) / 100, 0.12),
    "dining": (np.array([-8, -6, 0, 2, 4, 6, 6, 5, 2, 0, 2, 0]) / 100, 0.25),
    "travel": (np.array([-20, -15, 0, 10, 15, 45, 70, 60, 10, -10, -20, 0]) / 100, 0.30),
    "utilities": (np.array([25, 22, 12, 0, -10, -15, -12, -12, -8, 0, 10, 0]) / 100, 0.15),
    "shopping": (np.array([-15, -12, -5, 0, 0, 0, 0, 5, 0, 0, 30, 0]) / 100, 0.70),
    "entertainment": (np.array([-5, -5, 0, 0, 5, 8, 10, 8, 0, 0, 5, 0]) / 100, 0.20),
}
_SHARE = {"groceries": 0.12, "dining": 0.05, "travel": 0.04, "utilities": 0.06, "shopping": 0.07, "entertainment": 0.03}


def generate_spending(n_series: int, seed: int, *, months: int = 60) -> pd.DataFrame:
    """Monthly spending per customer x category, long format, ending at the same month."""
    if n_series < 1:
        raise DataError("generate at least one series")
    rng = np.random.default_rng(seed)
    frames = []
    customers = int(np.ceil(n_series / len(CATEGORIES)))
    incomes = rng.lognormal(np.log(3_500), 0.45, customers)  # monthly income
    for i in range(n_series):
        c, category = divmod(i, len(CATEGORIES))
        cat = CATEGORIES[category]
        shape, holiday = _SHAPES[cat]
        kind = rng.random()
        length = months if kind < 0.8 else int(rng.integers(26, 34))  # some short series
        t = np.arange(length)
        ds = pd.date_range(end=END, periods=length, freq="MS")
        level = incomes[c] * _SHARE[cat] * rng.lognormal(0, 0.25)
        trend = 1 + rng.normal(0.002, 0.004) * t
        season = 1 + shape[ds.month - 1] * rng.uniform(0.6, 1.4)
        season = season + (ds.month == 12) * holiday * rng.uniform(0.5, 1.5)  # holiday peak
        y = level * trend * season * rng.lognormal(0, rng.uniform(0.05, 0.2), length)
        if rng.random() < 0.06:  # a structural break: a new job, a move
            at = int(rng.integers(length // 3, 2 * length // 3))
            y[at:] *= rng.choice([0.55, 1.6])
        if cat == "travel" and rng.random() < 0.5:  # intermittent: most months nothing
            y = np.where(rng.random(length) < 0.35, y * 2.5, 0.0)
        frames.append(pd.DataFrame({SERIES_ID: f"c{c:05d}/{cat}", DS: ds, Y: np.round(np.maximum(y, 0), 2)}))
    return pd.concat(frames, ignore_index=True)


def generate_weekly_spending(n_series: int, seed: int, *, weeks: int = 156, anchor: str = "W-MON") -> pd.DataFrame:
    """Weekly spending per customer x category, long format, every week on ``anchor``'s weekday (``W-MON``,
    ``W-SUN``, ...), the last week at or before the monthly data's last month start: the monthly shapes
    (by the week's month), holiday weeks in December, weekly noise, some short and intermittent series."""
    if n_series < 1:
        raise DataError("generate at least one series")
    rng = np.random.default_rng(seed)
    frames = []
    customers = int(np.ceil(n_series / len(CATEGORIES)))
    incomes = rng.lognormal(np.log(3_500), 0.45, customers) * 12 / 52  # weekly income
    for i in range(n_series):
        c, category = divmod(i, len(CATEGORIES))
        cat = CATEGORIES[category]
        shape, holiday = _SHAPES[cat]
        length = weeks if rng.random() < 0.8 else int(rng.integers(weeks // 2, 3 * weeks // 4))  # some short series
        ds = pd.date_range(end=END, periods=length, freq=anchor)
        level = incomes[c] * _SHARE[cat] * rng.lognormal(0, 0.25)
        trend = 1 + rng.normal(0.0005, 0.001) * np.arange(length)
        season = 1 + shape[ds.month - 1] * rng.uniform(0.6, 1.4)
        season = season + ((ds.month == 12) & (ds.day >= 8)) * holiday * rng.uniform(0.5, 1.5)  # holiday weeks
        y = level * trend * season * rng.lognormal(0, rng.uniform(0.1, 0.3), length)
        if cat == "travel" and rng.random() < 0.5:  # intermittent: most weeks nothing
            y = np.where(rng.random(length) < 0.2, y * 4.0, 0.0)
        frames.append(pd.DataFrame({SERIES_ID: f"c{c:05d}/{cat}", DS: ds, Y: np.round(np.maximum(y, 0), 2)}))
    return pd.concat(frames, ignore_index=True)


def generate_cashflow(n_series: int, seed: int, *, days: int = 240) -> pd.DataFrame:
    """Daily net cash flow per account with pay days (the 1st and 15th, or the month's last day), rent and weekdays."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(end=END - pd.Timedelta(days=1), periods=days, freq="D")
    frames = []
    for i in range(n_series):
        pay = rng.lognormal(np.log(2_000), 0.4)
        semimonthly = rng.random() < 0.5
        payday = (ds.day == 1) | (ds.day == 15) if semimonthly else ds.is_month_end
        inflow = np.where(payday, pay / (2 if semimonthly else 1), 0.0)
        rent = np.where(ds.day == 2, -pay * rng.uniform(0.25, 0.4), 0.0)
        weekday = np.array([1.0, 0.9, 0.9, 1.0, 1.3, 1.8, 1.4])[ds.weekday]
        daily = -pay / 45 * weekday * rng.lognormal(0, 0.35, days)
        frames.append(pd.DataFrame({SERIES_ID: f"a{i:05d}", DS: ds, Y: np.round(inflow + rent + daily, 2)}))
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "FREQS",
    "SeriesSpec",
    "check_horizon",
    "check_series",
    "generate_cashflow",
    "generate_spending",
    "generate_weekly_spending",
    "series_block",
    "series_check_columns",
    "series_dataset_spec",
    "series_spec_of",
]
