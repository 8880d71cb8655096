"""The forecast monitoring job: live error of the champion's forecasts against the actuals sent back,
per series and overall, compared with its backtest; written like the performance job (an MLflow run in
the monitoring experiment, a ``monitoring_results`` row) so the decision and the retrain DAG work unchanged."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitoring import store

if TYPE_CHECKING:
    import pandas as pd

    from families.spending_forecast.monitor import SpendingForecastMonitoring
    from ledgerline.settings import Settings
    from monitoring.data import Champion
    from monitoring.jobs import JobOutcome
    from monitoring.settings import MonitoringSettings

logger = logging.getLogger(__name__)


def load_actuals(url: str, model_name: str) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy as sa

    from families.spending_forecast import tables
    from ledgerline import db

    engine = db.engine_for(url)
    t = tables.forecast_actuals
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.series_id, t.c.ds, t.c.y).where(t.c.model_name == model_name)).all()
    return pd.DataFrame(rows, columns=["series_id", "ds", "y"])


def run_forecast_job(
    settings: Settings,
    model_name: str,
    *,
    family: SpendingForecastMonitoring,
    now: datetime | None = None,
    mon: MonitoringSettings | None = None,
    champion: Champion | None = None,
) -> JobOutcome:
    from families.spending_forecast.model import load_forecast_model
    from families.spending_forecast.monitor import MAX_DEGRADED_SHARE, MIN_POINTS
    from monitoring import data
    from monitoring.jobs import JobOutcome, _log_run, _now
    from monitoring.settings import MonitoringSettings

    now = _now(now)
    mon = mon or MonitoringSettings()
    champion = champion or data.resolve_champion(settings, model_name)
    url = settings.resolved_app_db_url()
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri())
    model = load_forecast_model(f"models:/{model_name}/{champion.version}")
    overall, per = family.live_errors(model, load_actuals(url, model_name))
    baseline = {k: champion.offline_metrics[k] for k in ("mase", "wape") if k in champion.offline_metrics}
    reasons: list[str] = []
    if overall["points"] < MIN_POINTS:
        status = "insufficient_data"
        reasons.append(f"{int(overall['points'])} actuals matched to forecasts; at least {MIN_POINTS} are needed")
    else:
        status = "ok"
        for rule in family.performance_rules(mon):
            if rule.metric in overall and rule.metric in baseline:
                ok, text = rule.check_against(overall[rule.metric], baseline[rule.metric], "the backtest")
                reasons.append(text)
                if not ok:
                    status = "degraded"
        share = overall["degraded_series_share"]
        if share > MAX_DEGRADED_SHARE:
            status = "degraded"
            reasons.append(f"{share:.0%} of judged series forecast much worse than their backtest (limit {MAX_DEGRADED_SHARE:.0%})")
    worst = per.sort_values("live_mase", ascending=False).head(20)
    summary: dict[str, Any] = {
        "status": status,
        "family": family.name,
        "reasons": reasons,
        "live": overall,
        "backtest": baseline,
        "degraded_series": per.loc[per["degraded"], "series_id"].head(50).tolist(),
        "worst_series": json.loads(worst.to_json(orient="records")),
    }
    start, end = now - timedelta(days=mon.window_days), now
    metrics = {f"live_{k}": v for k, v in overall.items()}
    metrics.update({f"offline_{k}": v for k, v in baseline.items()})
    run_id, run_url = _log_run(
        settings, mon, champion, job="performance", status=status, window=(start, end), metrics=metrics,
        params={"family": family.name, **{f"{r.metric}_tolerance": r.tolerance for r in family.performance_rules(mon)}},
        texts={"performance/summary.json": json.dumps(store.jsonable(summary), indent=2),
               "performance/per_series.json": per.to_json(orient="records")},
    )
    result_id = store.record_result(
        url, model_name=model_name, model_version=champion.version, job="performance", window_start=start,
        window_end=end, status=status, summary=summary, mlflow_run_id=run_id, created_at=now,
    )
    logger.info("forecast job %s v%s: %s (%s)", model_name, champion.version, status, "; ".join(reasons))
    return JobOutcome("performance", status, summary, start, end, run_id, run_url, result_id, summary)  # type: ignore[arg-type]
