"""The forecast family's pictures: backtests of sample series, the MASE histogram, the chosen models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd

    from families.spending_forecast.data import SeriesSpec
    from families.spending_forecast.model import ForecastModel


def backtest_samples(model: ForecastModel, frame: pd.DataFrame, ss: SeriesSpec, n: int = 6) -> Figure:
    """History, the holdout forecast with its 80 % and 95 % bands, and the registered forecast, for a few series."""
    import pandas as pd

    ids = sorted(model.lineage["series_id"])
    pick = [ids[i] for i in np.linspace(0, len(ids) - 1, min(n, len(ids))).astype(int)]
    fig = Figure(figsize=(9, 2.2 * len(pick)))
    axes = np.atleast_1d(fig.subplots(len(pick), 1))
    chosen = model.lineage.set_index("series_id")["chosen"]
    for ax, sid in zip(axes, pick, strict=False):
        hist = frame[frame[ss.series].astype(str) == sid]
        ds = pd.DatetimeIndex(hist[ss.timestamp]).tz_localize(None) if pd.DatetimeIndex(hist[ss.timestamp]).tz else pd.DatetimeIndex(hist[ss.timestamp])
        ax.plot(ds, hist[ss.value], color="black", lw=1, label="actual")
        hd = model.holdout[model.holdout["series_id"] == sid]
        ax.fill_between(hd["ds"], hd["lower_95"], hd["upper_95"], color="tab:blue", alpha=0.15)
        ax.fill_between(hd["ds"], hd["lower_80"], hd["upper_80"], color="tab:blue", alpha=0.3)
        ax.plot(hd["ds"], hd["yhat"], color="tab:blue", label="backtest")
        ax.plot(hd["ds"], hd["yhat_naive"], color="grey", ls=":", label="seasonal naive")
        tb = model.table[model.table["series_id"] == sid]
        ax.fill_between(tb["ds"], tb["lower_80"], tb["upper_80"], color="tab:orange", alpha=0.25)
        ax.plot(tb["ds"], tb["yhat"], color="tab:orange", label="forecast")
        ax.set_title(f"{sid} ({chosen.get(sid, '?')})", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def mase_histogram(model: ForecastModel) -> Figure:
    """MASE per series on the holdout window: the chosen model against seasonal naive."""
    h = model.holdout
    scale = h["series_id"].map(model.lineage.set_index("series_id")["holdout_scale"])
    ours = ((h["y"] - h["yhat"]).abs() / scale).groupby(h["series_id"]).mean()
    naive = ((h["y"] - h["yhat_naive"]).abs() / scale).groupby(h["series_id"]).mean()
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    top = float(np.nanquantile(np.r_[ours, naive], 0.98)) if len(ours) else 1.0
    bins = [float(b) for b in np.linspace(0, max(top, 1e-6), 30)]
    ax.hist(naive.clip(upper=top), bins=bins, alpha=0.5, label=f"seasonal naive (mean {naive.mean():.2f})", color="grey")
    ax.hist(ours.clip(upper=top), bins=bins, alpha=0.6, label=f"chosen (mean {ours.mean():.2f})", color="tab:blue")
    ax.axvline(1.0, color="black", ls="--", lw=0.8)
    ax.set_xlabel("MASE on the holdout window (per series)")
    ax.set_ylabel("series")
    ax.legend()
    return fig


def chosen_models(model: ForecastModel) -> Figure:
    counts = model.lineage["chosen"].value_counts()
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.bar(counts.index.astype(str), counts.to_numpy(), color="tab:blue")
    for i, v in enumerate(counts.to_numpy()):
        ax.text(i, v, str(int(v)), ha="center", va="bottom")
    ax.set_ylabel("series")
    ax.set_title("model chosen by each series' backtest")
    return fig
