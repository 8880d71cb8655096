"""Per-series forecasting with a rolling-origin backtest, model choice per series and intervals
calibrated from backtest residuals. Pure functions (no MLflow, no database): an Airflow task can
run :func:`train_chunk` on its share of the series and :func:`gather` joins the parts.

Candidates per series:

- ``snaive``: seasonal naive (the value one season earlier); the reference every MASE is scaled by.
- ``theta``: the Theta method (simple exponential smoothing with half the linear drift) on the
  additively deseasonalised series; numpy only, microseconds per series, strong on M3-style data.
- ``prophet``: Prophet with settings for short business series (few Fourier terms, fewer change
  points, no sampling: intervals come from the backtest), only where the history holds at least
  two seasons before the backtest origin.

Backtest: origins ``n - w``, ``n - 2w``, ... (``w`` = the horizon, at most a season) with at least
a season of history. The earlier origins choose the model (lowest mean MASE); the last window is
the holdout the gate scores, forecast by the chosen model fitted up to that origin (a series with
a single origin chooses and scores on it: ``selection_in_sample`` in the lineage says so). Interval
half-widths are quantiles of the chosen models' absolute errors, scaled by each series' MASE scale,
pooled over series per horizon step: the holdout's intervals from the selection origins only, the
forecast table's from every origin.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from families.spending_forecast.data import SeriesSpec
from families.spending_forecast.model import ForecastModel

MODELS = ("snaive", "theta", "prophet")
Z = {"80": 0.8, "95": 0.95}


@dataclass(frozen=True)
class ForecastParams:
    n_origins: int = 2
    models: str = ",".join(MODELS)  # the candidates, comma-separated
    workers: int = 2
    max_chunks: int = 8
    prophet_changepoints: int = 8
    seed: int = 42

    def __post_init__(self) -> None:
        from ledgerline.errors import LedgerlineError

        unknown = [m for m in self.model_list if m not in MODELS]
        if unknown or "snaive" not in self.model_list:
            raise LedgerlineError(
                f"models={self.models!r}: candidates are {list(MODELS)} and must include snaive (the reference)"
            )
        if not 1 <= self.n_origins <= 12:
            raise LedgerlineError(f"n_origins must be between 1 and 12, not {self.n_origins}")
        if not 1 <= self.workers <= 64 or not 1 <= self.max_chunks <= 1000:
            raise LedgerlineError("workers must be 1..64 and max_chunks 1..1000")

    @property
    def model_list(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.models.split(",") if m.strip())

    def as_dict(self) -> dict[str, object]:
        return {
            "n_origins": self.n_origins,
            "models": self.models,
            "workers": self.workers,
            "max_chunks": self.max_chunks,
            "prophet_changepoints": self.prophet_changepoints,
        }


# --------------------------------------------------------------------------- models


def snaive(y: np.ndarray, h: int, m: int) -> np.ndarray:
    n = len(y)
    if n >= m:
        return np.array([y[n - m + (j % m)] for j in range(h)], dtype=float)
    return np.full(h, y[-1], dtype=float)


def _seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    n = len(y)
    if n < 2 * m:
        return np.zeros(m)
    kernel = np.ones(m) / m
    trend = np.convolve(y, kernel, mode="same")
    half = m // 2
    valid = np.zeros(n, bool)
    valid[half : n - half] = True
    dev = y - trend
    pos = np.arange(n) % m
    idx = np.array([dev[valid & (pos == k)].mean() if (valid & (pos == k)).any() else 0.0 for k in range(m)])
    return idx - idx.mean()


def theta_fit(y: np.ndarray, m: int) -> dict[str, Any]:
    n = len(y)
    s = _seasonal_indices(y, m)
    x = y - s[np.arange(n) % m]
    best = (math.inf, 0.5, float(x[0]))
    for alpha in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
        level, sse = float(x[0]), 0.0
        for v in x[1:]:
            sse += (v - level) ** 2
            level += alpha * (v - level)
        if sse < best[0]:
            best = (sse, alpha, level)
    _, alpha, level = best
    slope = float(np.polyfit(np.arange(n), x, 1)[0]) if n > 2 else 0.0
    return {"alpha": alpha, "level": level, "slope": slope, "n": n, "season": s.tolist(), "m": m}


def theta_predict(state: dict[str, Any], h: int) -> np.ndarray:
    alpha, n, m = state["alpha"], state["n"], state["m"]
    steps = np.arange(1, h + 1)
    drift = 0.5 * state["slope"] * (steps - 1 + 1 / alpha - (1 - alpha) ** n / alpha)
    s = np.asarray(state["season"])
    return state["level"] + drift + s[(n + steps - 1) % m]


def _silence_prophet() -> None:
    import cmdstanpy  # noqa: F401  - it installs its own handler on import; silence it after
    import prophet  # noqa: F401

    for name in ("cmdstanpy", "prophet", "prophet.plot", "prophet.forecaster", "prophet.models"):
        logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(name).propagate = False
        logging.getLogger(name).disabled = True


def prophet_fit(ds: pd.DatetimeIndex, y: np.ndarray, ss: SeriesSpec, params: ForecastParams) -> Any:
    _silence_prophet()
    from prophet import Prophet

    daily = ss.freq == "D"
    model = Prophet(
        yearly_seasonality=4 if ss.freq == "MS" else (len(y) >= 730 or ss.freq == "W") and 6,
        weekly_seasonality=3 if daily else False,
        daily_seasonality=False,
        n_changepoints=min(params.prophet_changepoints, max(1, len(y) // 4)),
        uncertainty_samples=0,
    )
    if daily:
        model.add_seasonality("monthly", period=30.5, fourier_order=5)  # pay-day cycles
    model.fit(pd.DataFrame({"ds": ds, "y": y}), algorithm="LBFGS", iter=2000)
    return model


def prophet_predict(model: Any, future: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(model.predict(pd.DataFrame({"ds": future}))["yhat"], dtype=float)


def future_dates(last: pd.Timestamp, h: int, freq: str) -> pd.DatetimeIndex:
    if freq == "MS":
        return pd.date_range(last + pd.offsets.MonthBegin(1), periods=h, freq="MS")
    step = pd.Timedelta(days=7 if freq == "W" else 1)
    return pd.DatetimeIndex([last + step * (i + 1) for i in range(h)])


def mase_scale(y: np.ndarray, m: int) -> float:
    """In-sample mean absolute error of the seasonal naive forecast (lag 1 for a series shorter than two seasons)."""
    lag = m if len(y) > m else 1
    d = np.abs(y[lag:] - y[:-lag]) if len(y) > lag else np.abs(y)
    scale = float(d.mean()) if len(d) else 0.0
    if scale <= 1e-9:
        scale = max(float(np.abs(y).mean()), 1.0)
    return scale


# --------------------------------------------------------------------------- one series


@dataclass
class SeriesResult:
    series_id: str
    chosen: str
    length: int
    origins: int
    selection_in_sample: bool
    scores: dict[str, float]  # model -> mean MASE on the selection origins
    holdout_scale: float
    final_scale: float
    holdout: pd.DataFrame  # ds, y, yhat, yhat_naive, h
    selection_residuals: np.ndarray  # (h, |e| / scale) of the chosen model at the selection origins
    holdout_residuals: np.ndarray  # the same at the holdout origin
    forecast: pd.DataFrame  # ds, h, yhat (to the max horizon)
    state: str  # the chosen model's state as JSON text
    y_min: float = float("nan")  # the training values' range (actuals are checked against it)
    y_max: float = float("nan")


def _forecast(model: str, ds: pd.DatetimeIndex, y: np.ndarray, h: int, ss: SeriesSpec, params: ForecastParams) -> tuple[np.ndarray, str]:
    m = ss.season
    if model == "snaive":
        return snaive(y, h, m), json.dumps({"last_season": y[-m:].tolist()})
    if model == "theta":
        st = theta_fit(y, m)
        return theta_predict(st, h), json.dumps(st)
    fitted = prophet_fit(ds, y, ss, params)
    pred = prophet_predict(fitted, future_dates(ds[-1], h, ss.freq))
    from prophet.serialize import model_to_json

    return pred, model_to_json(fitted)


def fit_series(series_id: str, ds: pd.DatetimeIndex, y: np.ndarray, ss: SeriesSpec, params: ForecastParams) -> SeriesResult:
    n, m, w = len(y), ss.season, ss.backtest_horizon
    origins = [n - w * (j + 1) for j in range(params.n_origins) if n - w * (j + 1) >= m]
    if not origins:
        origins = [max(1, n - w)]
    holdout_origin, selection = origins[0], origins[1:] or origins[:1]

    def eligible(model: str, origin: int) -> bool:
        return model != "prophet" or origin >= 2 * m

    candidates = [c for c in params.model_list if all(eligible(c, o) for o in selection)] or ["snaive"]
    errors: dict[str, list[float]] = {c: [] for c in candidates}
    residuals: dict[str, list[tuple[int, float]]] = {c: [] for c in candidates}
    for o in selection:
        hist, actual = y[:o], y[o : o + w]
        scale = mase_scale(hist, m)
        for c in candidates:
            pred, _ = _forecast(c, ds[:o], hist, len(actual), ss, params)
            if not ss.allow_negative:
                pred = np.maximum(pred, 0.0)
            err = np.abs(actual - pred)
            errors[c].append(float(err.mean() / scale))
            residuals[c].extend((i + 1, float(e / scale)) for i, e in enumerate(err))
    scores = {c: float(np.mean(v)) for c, v in errors.items()}
    chosen = min(candidates, key=lambda c: (scores[c], MODELS.index(c)))

    # the holdout window: the chosen model fitted up to the last origin, and the seasonal naive reference
    hist, actual = y[:holdout_origin], y[holdout_origin : holdout_origin + w]
    hscale = mase_scale(hist, m)
    pred, _ = _forecast(chosen, ds[:holdout_origin], hist, len(actual), ss, params)
    naive = snaive(hist, len(actual), m)
    if not ss.allow_negative:
        pred, naive = np.maximum(pred, 0.0), np.maximum(naive, 0.0)
    herr = np.abs(actual - pred) / hscale
    holdout = pd.DataFrame({
        "ds": ds[holdout_origin : holdout_origin + w], "y": actual, "yhat": pred, "yhat_naive": naive,
        "h": np.arange(1, len(actual) + 1),
    })

    # the registered forecast: the chosen model on the whole history
    final, state = _forecast(chosen, ds, y, ss.horizon, ss, params)
    if not ss.allow_negative:
        final = np.maximum(final, 0.0)
    forecast = pd.DataFrame({"ds": future_dates(ds[-1], ss.horizon, ss.freq), "h": np.arange(1, ss.horizon + 1), "yhat": final})
    return SeriesResult(
        series_id=series_id,
        chosen=chosen,
        length=n,
        origins=len(origins),
        selection_in_sample=holdout_origin in selection,
        scores=scores,
        holdout_scale=hscale,
        final_scale=mase_scale(y, m),
        holdout=holdout,
        selection_residuals=np.array(residuals[chosen], dtype=float).reshape(-1, 2),
        holdout_residuals=np.column_stack([np.arange(1, len(herr) + 1), herr]) if len(herr) else np.zeros((0, 2)),
        forecast=forecast,
        state=state,
        y_min=float(np.min(y)) if n else float("nan"),
        y_max=float(np.max(y)) if n else float("nan"),
    )


# --------------------------------------------------------------------------- chunks


@dataclass
class ChunkPart:
    """What one chunk hands to :func:`gather` (picklable)."""

    results: list[SeriesResult] = field(default_factory=list)
    seconds: float = 0.0


def plan_chunks(frame: pd.DataFrame, ss: SeriesSpec, max_chunks: int) -> list[list[str]]:
    """Series ids per chunk: sorted ids dealt round-robin, so chunks are deterministic and balanced in
    short and long series alike."""
    ids = sorted(frame[ss.series].astype(str).unique())
    k = max(1, min(max_chunks, len(ids)))
    return [ids[i::k] for i in range(k)]


def train_chunk(frame: pd.DataFrame, ss: SeriesSpec, params: ForecastParams) -> ChunkPart:
    import time

    t0 = time.perf_counter()
    part = ChunkPart()
    ordered = frame.sort_values([ss.series, ss.timestamp], kind="stable")
    for sid, g in ordered.groupby(ss.series, sort=True):
        ds = pd.DatetimeIndex(g[ss.timestamp])
        if ds.tz is not None:
            ds = ds.tz_convert("UTC").tz_localize(None)
        part.results.append(fit_series(str(sid), ds, g[ss.value].to_numpy(dtype=float), ss, params))
    part.seconds = time.perf_counter() - t0
    return part


def _quantiles(res: np.ndarray, horizon: int, w: int) -> dict[str, list[float]]:
    """Normalised half-widths per horizon step 1..horizon: one pooled quantile over the backtest window
    (per-step quantiles of a few hundred residuals are noise, and forcing them to grow biases them up),
    grown with the square root of the step beyond the window."""
    out: dict[str, list[float]] = {}
    for key, level in Z.items():
        e = res[:, 1] if len(res) else np.array([1.0])
        base = float(np.quantile(e, level))
        out[key] = [base if h <= w else float(base * math.sqrt(h / w)) for h in range(1, horizon + 1)]
    return out


def gather(parts: Sequence[ChunkPart], ss: SeriesSpec, params: ForecastParams) -> ForecastModel:
    results = sorted((r for p in parts for r in p.results), key=lambda r: r.series_id)
    if not results:
        from ledgerline.errors import DataError

        raise DataError("no series to gather: every chunk was empty")
    w = ss.backtest_horizon
    sel = np.vstack([r.selection_residuals for r in results if len(r.selection_residuals)] or [np.zeros((0, 2))])
    every = np.vstack([sel, *[r.holdout_residuals for r in results if len(r.holdout_residuals)]])
    q_holdout = _quantiles(sel, w, w)
    q_table = _quantiles(every, ss.horizon, w)
    low_floor = -np.inf if ss.allow_negative else 0.0

    holdouts, tables, lineage, states = [], [], [], []
    for r in results:
        hd = r.holdout.copy()
        hd.insert(0, "series_id", r.series_id)
        steps = hd["h"].to_numpy() - 1
        for key in Z:
            half = np.asarray(q_holdout[key])[steps] * r.holdout_scale
            hd[f"lower_{key}"] = np.maximum(hd["yhat"] - half, low_floor)
            hd[f"upper_{key}"] = hd["yhat"] + half
        holdouts.append(hd)
        tb = r.forecast.copy()
        tb.insert(0, "series_id", r.series_id)
        steps = tb["h"].to_numpy() - 1
        for key in Z:
            half = np.asarray(q_table[key])[steps] * r.final_scale
            tb[f"lower_{key}"] = np.maximum(tb["yhat"] - half, low_floor)
            tb[f"upper_{key}"] = tb["yhat"] + half
        tables.append(tb)
        lineage.append({
            "series_id": r.series_id, "chosen": r.chosen, "length": r.length, "origins": r.origins,
            "selection_in_sample": r.selection_in_sample, "holdout_scale": r.holdout_scale,
            "y_min": r.y_min, "y_max": r.y_max,
            **{f"backtest_mase_{c}": r.scores.get(c, float("nan")) for c in params.model_list},
        })
        states.append({"series_id": r.series_id, "model": r.chosen, "state": r.state})
    table = pd.concat(tables, ignore_index=True)[
        ["series_id", "ds", "h", "yhat", "lower_80", "upper_80", "lower_95", "upper_95"]
    ]
    return ForecastModel(
        freq=ss.freq,
        horizon=ss.horizon,
        season=ss.season,
        table=table,
        holdout=pd.concat(holdouts, ignore_index=True),
        lineage=pd.DataFrame(lineage),
        states=pd.DataFrame(states),
        quantiles=q_table,
        meta={
            "backtest_horizon": w,
            "n_origins": params.n_origins,
            "models": list(params.model_list),
            "holdout_quantiles": q_holdout,
            "series": len(results),
            "allow_negative": ss.allow_negative,
            "chunk_seconds": [p.seconds for p in parts],
        },
    )


# --------------------------------------------------------------------------- metrics


def score(model: ForecastModel, test: pd.DataFrame, ss: SeriesSpec) -> dict[str, float]:
    """Out-of-sample errors of ``model`` on ``test`` (series, date, actual): its holdout forecasts for
    dates inside its training history (fitted before the holdout origin), its forecast table after."""
    joined, scales, expected = holdout_rows(model, test, ss)
    return error_metrics(joined, scales, matched=len(joined), expected=expected)


def holdout_rows(model: ForecastModel, test: pd.DataFrame, ss: SeriesSpec) -> tuple[pd.DataFrame, pd.Series, int]:
    """``test``'s rows joined with the model's out-of-sample forecasts and bounds (see :func:`score`), each
    series' MASE scale, and the number of test rows."""
    t = pd.DataFrame({
        "series_id": test[ss.series].astype(str).to_numpy(),
        "ds": _naive_ts(test[ss.timestamp]),
        "y": test[ss.value].to_numpy(dtype=float),
    })
    hold = model.holdout[["series_id", "ds", "yhat", "yhat_naive", "lower_80", "upper_80", "lower_95", "upper_95"]]
    joined = t.merge(hold, on=["series_id", "ds"], how="left")
    missing = joined["yhat"].isna()
    if missing.any():
        tab = model.table[["series_id", "ds", "yhat", "lower_80", "upper_80", "lower_95", "upper_95"]]
        late = t[missing.to_numpy()].merge(tab, on=["series_id", "ds"], how="left")
        late["yhat_naive"] = np.nan
        joined = pd.concat([joined[~missing], late], ignore_index=True)
    joined = joined.dropna(subset=["yhat"])
    scales = model.lineage.set_index("series_id")["holdout_scale"]
    return joined, scales, len(t)


def _naive_ts(values: pd.Series) -> pd.Series:
    d = pd.DatetimeIndex(values)
    if d.tz is not None:
        d = d.tz_convert("UTC").tz_localize(None)
    return pd.Series(d.astype("datetime64[ns]"))


def error_metrics(j: pd.DataFrame, scales: pd.Series, *, matched: int, expected: int) -> dict[str, float]:
    """MASE (mean, median, p90), sMAPE, WAPE and 80/95 % coverage over rows with y, yhat (and bounds)."""
    if not len(j):
        return {"matched_share": 0.0}
    err = (j["y"] - j["yhat"]).abs()
    scale = j["series_id"].map(scales).fillna(1.0).to_numpy()
    per_series = pd.DataFrame({"s": j["series_id"], "e": err.to_numpy() / scale}).groupby("s")["e"].mean()
    denom = (j["y"].abs() + j["yhat"].abs()).to_numpy()
    smape = np.where(denom > 0, 200 * err.to_numpy() / np.where(denom > 0, denom, 1), 0.0)
    out = {
        "mase": float(per_series.mean()),
        "mase_median": float(per_series.median()),
        "mase_p90": float(per_series.quantile(0.9)),
        "smape": float(smape.mean()),
        "wape": float(err.sum() / max(j["y"].abs().sum(), 1e-9)),
        "series": float(len(per_series)),
        "points": float(len(j)),
        "matched_share": float(matched / max(expected, 1)),
    }
    for key in Z:
        if f"lower_{key}" in j:
            inside = (j["y"] >= j[f"lower_{key}"]) & (j["y"] <= j[f"upper_{key}"])
            out[f"coverage_{key}"] = float(inside.mean())
    if "yhat_naive" in j and j["yhat_naive"].notna().all():
        nerr = (j["y"] - j["yhat_naive"]).abs().to_numpy() / scale
        naive_series = pd.DataFrame({"s": j["series_id"], "e": nerr}).groupby("s")["e"].mean()
        out["mase_naive"] = float(naive_series.mean())
        out["mase_ratio_vs_naive"] = out["mase"] / max(out["mase_naive"], 1e-9)
    return out


__all__ = ["ChunkPart", "ForecastParams", "fit_series", "gather", "plan_chunks", "score", "train_chunk"]
