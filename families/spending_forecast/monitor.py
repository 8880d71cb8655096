"""Forecast monitoring: feedback is the actual value per (series, date) (``POST /v1/models/{name}/actuals``,
table ``forecast_actuals``), compared with the champion's forecast table. Live WAPE and MASE, per series
and overall, are set against the backtest's (the champion's offline test metrics and its holdout per
series); a degraded overall error, or too many degraded series, is the retrain reason "performance".

Series data has no row-level inputs to measure drift on (``series_feedback``), so :meth:`monitored_columns`
is empty and the prediction-log hooks are inert; :meth:`performance_job` gives the monitoring run its verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ledgerline.families import MetricRule
from monitoring.family import InsufficientLabels, MonitoringFamilyBase

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from families.spending_forecast.model import ForecastModel
    from features.spec import DatasetSpec
    from ledgerline.settings import Settings
    from monitoring.data import Champion
    from monitoring.jobs import JobOutcome
    from monitoring.settings import MonitoringSettings

MIN_POINTS = 20  # fewer actuals matched to forecasts: insufficient_data
MIN_SERIES_POINTS = 3  # a series is judged on at least this many actuals
SERIES_DEGRADED_FACTOR = 1.5  # a series' live MASE above 1.5 x its backtest MASE (and +0.5) is degraded
MAX_DEGRADED_SHARE = 0.25  # more degraded series than this share: the model is degraded


class SpendingForecastMonitoring(MonitoringFamilyBase["ForecastModel"]):
    name = "spending-forecast"
    series_feedback = True  # feedback is actuals per (series, date): monitoring runs performance_job

    def monitored_columns(self, spec: DatasetSpec) -> tuple[list[str], list[str]]:
        return [], []

    def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        import numpy as np

        return np.zeros(len(frame))

    def performance_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        return (
            MetricRule("mase", "lower", tolerance=mon.tolerances.get("mase", 0.3)),
            MetricRule("wape", "lower", tolerance=mon.tolerances.get("wape", 0.05)),
        )

    def live_metrics(
        self, y: np.ndarray, scores: np.ndarray, outputs: Sequence[Mapping[str, object]] | None
    ) -> dict[str, float]:
        raise InsufficientLabels("forecasting feedback is actuals per series and date (forecast_actuals), not labels")

    # --- series feedback --------------------------------------------------------------
    def new_labels(self, url: str, model_name: str, since: datetime, until: datetime) -> int:
        """Actuals received in ``[since, until]`` (the feedback-volume trigger counts them, not the feedback table)."""
        import sqlalchemy as sa

        from families.spending_forecast.tables import forecast_actuals
        from ledgerline import db

        a = forecast_actuals.c
        q = sa.select(sa.func.count()).select_from(forecast_actuals).where(
            a.model_name == model_name, a.received_at >= since, a.received_at <= until
        )
        with db.engine_for(url).connect() as conn:
            return int(conn.execute(q).scalar_one())

    def live_errors(self, model: ForecastModel, actuals: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
        """Overall live metrics and a per-series table (live and backtest MASE, WAPE, points, degraded)
        of ``actuals`` (series_id, ds, y) against the forecast table; actuals without a forecast are ignored."""
        import numpy as np
        import pandas as pd

        a = actuals.assign(ds=pd.to_datetime(actuals["ds"]).astype("datetime64[ns]"), series_id=actuals["series_id"].astype(str))
        table = model.table[["series_id", "ds", "yhat"]].assign(ds=lambda t: pd.to_datetime(t["ds"]).astype("datetime64[ns]"))
        j = a.merge(table, on=["series_id", "ds"], how="inner")
        scale = j["series_id"].map(model.lineage.set_index("series_id")["holdout_scale"]).to_numpy()
        j["ae"] = (j["y"] - j["yhat"]).abs()
        j["se"] = j["ae"] / scale
        h = model.holdout
        bt_scale = h["series_id"].map(model.lineage.set_index("series_id")["holdout_scale"])
        backtest = ((h["y"] - h["yhat"]).abs() / bt_scale).groupby(h["series_id"]).mean()
        per = j.groupby("series_id").agg(points=("y", "size"), live_mase=("se", "mean"), abs_err=("ae", "sum"),
                                         abs_y=("y", lambda v: float(np.abs(v).sum())))
        per["live_wape"] = per["abs_err"] / per["abs_y"].clip(lower=1e-9)
        per["backtest_mase"] = backtest.reindex(per.index)
        per["degraded"] = (per["points"] >= MIN_SERIES_POINTS) & (
            per["live_mase"] > np.maximum(per["backtest_mase"] * SERIES_DEGRADED_FACTOR, per["backtest_mase"] + 0.5))
        judged = per[per["points"] >= MIN_SERIES_POINTS]
        overall: dict[str, float] = {"points": float(len(j)), "series": float(len(per)), "unmatched": float(len(a) - len(j))}
        if len(j):
            overall["mase"] = float(per["live_mase"].mean())
            overall["wape"] = float(j["ae"].sum() / max(float(j["y"].abs().sum()), 1e-9))
        overall["degraded_series_share"] = float(judged["degraded"].mean()) if len(judged) else 0.0
        return overall, per.drop(columns=["abs_err", "abs_y"]).reset_index()

    def performance_job(
        self,
        settings: Settings,
        model_name: str,
        *,
        now: datetime,
        mon: MonitoringSettings,
        champion: Champion,
    ) -> JobOutcome | None:
        from families.spending_forecast.live import run_forecast_job

        return run_forecast_job(settings, model_name, family=self, now=now, mon=mon, champion=champion)


FAMILY = SpendingForecastMonitoring()
