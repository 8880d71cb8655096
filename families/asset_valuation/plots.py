"""Figures of an asset-valuation run (test split): predicted vs actual, coverage, residuals over time.

Each function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state,
no display: safe in servers and workers, like ``training/plots.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from families.asset_valuation.model import AssetValuationModel, parse_dates


def predicted_vs_actual_figure(y: np.ndarray, pred: np.ndarray, *, target: str = "value") -> Figure:
    """Scatter of predictions against actual values, log axes when both are positive."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.scatter(y, pred, s=6, alpha=0.4, lw=0)
    lo, hi = float(np.nanmin([y.min(), pred.min()])), float(np.nanmax([y.max(), pred.max()]))
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey", label="prediction = actual")
    if lo > 0:
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Predicted vs actual (test split)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def coverage_figure(
    y: np.ndarray, lower: np.ndarray, upper: np.ndarray, groups: np.ndarray, *, level: float, by: str = "segment"
) -> Figure:
    """Share of actual values inside the interval per group (segment or month), against the nominal level."""
    inside = (np.asarray(y) >= lower) & (np.asarray(y) <= upper)
    frame = pd.DataFrame({"group": np.asarray(groups).astype(str), "inside": inside})
    stats = frame.groupby("group", sort=True)["inside"].agg(["mean", "size"])
    fig = Figure(figsize=(max(5.0, 0.45 * len(stats) + 2), 4))
    ax = fig.subplots()
    ax.bar(range(len(stats)), stats["mean"], color="tab:blue", alpha=0.8)
    ax.axhline(level, ls="--", c="tab:red", label=f"nominal {level:.0%}")
    ax.set_xticks(range(len(stats)), [f"{g or '(empty)'}\n{n}" for g, n in zip(stats.index, stats["size"], strict=True)],
                  rotation=45 if len(stats) > 8 else 0, fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="coverage", xlabel=f"{by} (rows)", title=f"Interval coverage by {by} (test split)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def residuals_over_time_figure(dates: pd.Series, y: np.ndarray, pred: np.ndarray, *, log: bool = True) -> Figure:
    """Residuals (log(actual/predicted) when ``log``, else actual - predicted) against the date, monthly median."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    resid = np.log(y / pred) if log else y - pred
    when = pd.Series(pd.to_datetime(dates).to_numpy())
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.scatter(when, resid, s=5, alpha=0.3, lw=0, label="sale")
    monthly = pd.Series(resid, index=when).dropna().groupby(pd.Grouper(freq="MS")).median().dropna()
    ax.plot(monthly.index, monthly.to_numpy(), c="tab:red", lw=2, marker="o", ms=3, label="monthly median")
    ax.axhline(0, c="grey", ls="--")
    ax.set(xlabel="date", ylabel="log(actual / predicted)" if log else "actual - predicted",
           title="Residuals over time (test split)")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def figures(model: AssetValuationModel, frame: pd.DataFrame, level: float | None = None) -> dict[str, Figure]:
    """Every figure for a labelled frame (rows with an empty target skipped), keyed by a file name."""
    y_all = pd.to_numeric(frame[model.target], errors="coerce")
    frame = frame.loc[y_all.notna().to_numpy()]
    y = y_all.dropna().to_numpy(dtype=float)
    pred, lower, upper = model.predict_interval(frame, level)
    level = model.level if level is None else level
    out = {"predicted_vs_actual.png": predicted_vs_actual_figure(y, pred, target=model.target)}
    if model.segment_column:
        out["coverage_by_segment.png"] = coverage_figure(y, lower, upper, model.segments(frame), level=level)
    if model.time_column:
        dates = parse_dates(frame[model.time_column], model.time_column)
        months = dates.dt.strftime("%Y-%m").fillna("").to_numpy()
        out["coverage_over_time.png"] = coverage_figure(y, lower, upper, months, level=level, by="month")
        positive = bool((y > 0).all() and (pred > 0).all())
        out["residuals_over_time.png"] = residuals_over_time_figure(dates, y, pred, log=positive)
    return out
