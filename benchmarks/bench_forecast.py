"""Benchmark: 1,000 monthly series trained, backtested and registered by the spending-forecast family,
next to fitting default Prophet on each series in one process.

    python benchmarks/bench_forecast.py               # 1,000 series (the issue's figure)
    python benchmarks/bench_forecast.py --series 60   # a short proof run

"Ours" is the whole ``ledgerline train spending-forecast`` loop (``training.pipeline.run_training``):
ingest the snapshot, the GX suite, per series a rolling-origin backtest of seasonal naive, Theta and
Prophet (two origins; the earlier chooses, the last is the holdout), the chosen model refitted on the
whole history, intervals calibrated from the backtest residuals, the MLflow run with plots and lineage,
registration and the gate, with the family's 2 worker processes. It uses a throw-away MLflow store
(SQLite) and home folder. "Plain Prophet" is ``Prophet().fit(df)`` with defaults on each series, one
after the other, in this process (no backtest, no choice, no intervals beyond Prophet's own).

Prophet fits are the cost: ours keeps Prophet's Fourier terms and change points few (monthly data
cannot support the defaults), skips its sampling (``uncertainty_samples=0``: intervals come from the
residuals), backtests it only where two seasons of history exist and refits it only where it was chosen.
The last line reads ``series_per_s=<ours> prophet_ratio=<our wall time / plain Prophet wall time>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def plain_prophet(frame, progress_every: int) -> float:  # noqa: ANN001
    from families.spending_forecast.fit import _silence_prophet

    _silence_prophet()
    from prophet import Prophet

    t0 = time.perf_counter()
    groups = list(frame.groupby("series_id", sort=True))
    for i, (_, g) in enumerate(groups, 1):
        Prophet().fit(g[["ds", "y"]])
        if i % progress_every == 0 or i == len(groups):
            print(f"  plain prophet: {i}/{len(groups)} series ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
    return time.perf_counter() - t0


def ours(frame, workdir: Path) -> tuple[float, dict[str, float]]:  # noqa: ANN001
    from ledgerline.settings import Settings
    from training.pipeline import TrainRequest, run_training

    data = workdir / "series.parquet"
    frame.to_parquet(data, index=False)
    settings = Settings(  # type: ignore[call-arg]
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", home=workdir / "home", data_dir=workdir / "data",
    )
    req = TrainRequest(
        family="spending-forecast", model_name="bench-forecast", data=data, target="y", logical_date="2026-11-30",
        series={"series_column": "series_id", "time_column": "ds", "freq": "MS", "horizon": 12},
    )
    t0 = time.perf_counter()
    result = run_training(settings, req, lambda m: print(f"  ours: {m}", file=sys.stderr, flush=True))
    return time.perf_counter() - t0, result.metrics


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=1000, help="monthly series (default 1000)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(level=logging.WARNING)
    from families.spending_forecast.data import generate_spending

    frame = generate_spending(args.series, args.seed, months=60)
    n = frame["series_id"].nunique()
    print(f"{n} monthly series, {len(frame):,} rows, {os.cpu_count()} cores", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-forecast-") as tmp:
        our_s, metrics = ours(frame, Path(tmp))
    naive = frame.assign(ds=frame["ds"].dt.tz_localize(None) if frame["ds"].dt.tz is not None else frame["ds"])
    prophet_s = plain_prophet(naive, max(1, n // 10))
    print()
    print(f"{'':38}{'wall s':>10}{'s / 1,000 series':>18}{'series/s':>10}")
    print(f"{'ours (backtest, choice, register)':38}{our_s:10.1f}{our_s / n * 1000:18.1f}{n / our_s:10.2f}")
    print(f"{'plain Prophet (default fit, 1 proc)':38}{prophet_s:10.1f}{prophet_s / n * 1000:18.1f}{n / prophet_s:10.2f}")
    shown = ("mase", "mase_naive", "mase_ratio_vs_naive", "wape", "coverage_80", "coverage_95",
             "share_snaive", "share_theta", "share_prophet")
    print("holdout: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in shown if k in metrics))
    print(f"series_per_s={n / our_s:.2f} prophet_ratio={our_s / prophet_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
