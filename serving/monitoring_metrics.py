"""Monitoring decisions as Prometheus metrics, next to the serving metrics on ``/metrics``.

The monitoring jobs run in Airflow and write their results to the app database; the serving API
is the always-on process Prometheus scrapes, so it reads the latest result per model and job and
the latest retrain decision (one small query, at most every ``CACHE_SECONDS``) and exports:

- ``ledgerline_monitoring_drift_detected{model}``: 1 when the latest drift result says drift
- ``ledgerline_monitoring_performance_degraded{model}``: 1 when the latest performance result says degraded
- ``ledgerline_monitoring_result_timestamp_seconds{model,job}``: when that result was written
- ``ledgerline_retrain_decision_timestamp_seconds{model,reason}``: the latest decision to retrain

When the database is away the last answer is kept (the serving metrics say the database is down).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledgerline import db

logger = logging.getLogger(__name__)

CACHE_SECONDS = 15.0
METRICS = {
    "ledgerline_monitoring_drift_detected": "1 when the model's latest drift result says drift",
    "ledgerline_monitoring_performance_degraded": "1 when the model's latest performance result says degraded",
    "ledgerline_monitoring_result_timestamp_seconds": "when the model's latest result of each monitoring job was written",
    "ledgerline_retrain_decision_timestamp_seconds": "when monitoring last decided to retrain the model, by reason",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MonitoringExporter:
    def __init__(self, engine: Engine, models: Sequence[str]) -> None:
        self.engine = engine
        self.models = list(models)
        self._lock = threading.Lock()
        self._text = ""
        self._at = 0.0

    def render(self) -> str:
        with self._lock:
            if time.monotonic() - self._at >= CACHE_SECONDS:
                try:
                    self._text = self._query()
                except Exception as exc:  # the database away: keep the last answer
                    logger.debug("monitoring metrics not refreshed: %s", exc)
                self._at = time.monotonic()
            return self._text

    def _query(self) -> str:
        mr, rd = db.monitoring_results, db.retrain_decisions
        samples: dict[str, list[str]] = {name: [] for name in METRICS}
        with self.engine.connect() as conn:
            for model in self.models:
                m = _label(model)
                for job, metric, bad in (("drift", "ledgerline_monitoring_drift_detected", "drift"),
                                         ("performance", "ledgerline_monitoring_performance_degraded", "degraded")):
                    row = conn.execute(sa.select(mr.c.status, mr.c.created_at).where(mr.c.model_name == model, mr.c.job == job)
                                       .order_by(mr.c.id.desc()).limit(1)).first()
                    samples[metric].append(f'{metric}{{model="{m}"}} {1 if row is not None and row.status == bad else 0}')
                    if row is not None:
                        samples["ledgerline_monitoring_result_timestamp_seconds"].append(
                            f'ledgerline_monitoring_result_timestamp_seconds{{model="{m}",job="{job}"}} {row.created_at.timestamp():.3f}')
                row = conn.execute(sa.select(rd.c.reason, rd.c.decided_at).where(rd.c.model_name == model, rd.c.retrain.is_(True))
                                   .order_by(rd.c.id.desc()).limit(1)).first()
                if row is not None:
                    samples["ledgerline_retrain_decision_timestamp_seconds"].append(
                        f'ledgerline_retrain_decision_timestamp_seconds{{model="{m}",reason="{_label(str(row.reason))}"}} '
                        f"{row.decided_at.timestamp():.3f}")
        lines = []
        for name, help_text in METRICS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples[name]]
        return "\n".join(lines) + "\n"
