"""Label-based performance: ROC-AUC, PR-AUC and calibration error of the champion on labelled
predictions, compared with the champion's offline test metrics.

Labels arrive late. A prediction counts only when its label window has closed, that
is when it is at least ``label_window_days`` old; the performance window is the
``performance_window_days`` (default ``window_days``) before that point. Labels that
arrived after ``now`` are ignored, so a rerun for a past ``now`` sees what was known then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitoring.settings import MonitoringSettings

if TYPE_CHECKING:
    import numpy as np

COMPARED = ("roc_auc", "pr_auc", "calibration_error")


def label_window(now: datetime, mon: MonitoringSettings) -> tuple[datetime, datetime]:
    """``[start, end)`` of the predictions whose label window has closed at ``now``."""
    end = now - timedelta(days=mon.label_window_days)
    return end - timedelta(days=mon.resolved_performance_window_days), end


def label_window_closed(created_at: datetime, now: datetime, mon: MonitoringSettings) -> bool:
    """Whether a prediction made at ``created_at`` may count for performance at ``now``."""
    return created_at + timedelta(days=mon.label_window_days) <= now


@dataclass(frozen=True)
class PerformanceResult:
    status: str  # ok | degraded | insufficient_data
    message: str
    predictions: int
    labelled: int
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    deltas: dict[str, float] = field(default_factory=dict)
    degraded: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "baseline": {k: round(v, 6) for k, v in self.baseline.items()},
            "deltas": {k: round(v, 6) for k, v in self.deltas.items()},
            "degraded": list(self.degraded),
        }


def _tolerances(mon: MonitoringSettings) -> dict[str, float | None]:
    return {"roc_auc": mon.roc_auc_tolerance, "pr_auc": mon.pr_auc_tolerance, "calibration_error": mon.calibration_tolerance}


def evaluate_performance(
    y: np.ndarray,
    p: np.ndarray,
    baseline: dict[str, float],
    mon: MonitoringSettings,
    *,
    predictions: int | None = None,
) -> PerformanceResult:
    """Metrics on the labelled window and whether they degraded beyond tolerance vs ``baseline``."""
    import numpy as np

    from ledgerline.metrics import binary_metrics

    y = np.asarray(y).astype(int)
    n = int(len(y))
    total = n if predictions is None else predictions
    if n < mon.min_labelled_rows:
        return PerformanceResult(
            "insufficient_data",
            f"not enough data: {n} labelled predictions with a closed label window "
            f"(of {total} in the window), at least {mon.min_labelled_rows} needed; no performance verdict",
            total,
            n,
            baseline=dict(baseline),
        )
    if y.min() == y.max():
        return PerformanceResult(
            "insufficient_data",
            f"not enough data: all {n} labels are {int(y[0])}; ROC-AUC needs both outcomes",
            total,
            n,
            baseline=dict(baseline),
        )
    full = binary_metrics(y, p)
    metrics = {k: full[k] for k in COMPARED}
    metrics["positive_rate"] = full["positive_rate"]
    deltas: dict[str, float] = {}
    degraded: list[str] = []
    notes: list[str] = []
    for name, tol in _tolerances(mon).items():
        if name not in baseline:
            notes.append(f"no offline {name} to compare")
            continue
        delta = metrics[name] - baseline[name]
        deltas[name] = delta
        if tol is None:
            continue
        worse = -delta if name != "calibration_error" else delta  # AUCs drop, calibration error rises
        if worse > tol:
            degraded.append(name)
    parts = [f"{k} {metrics[k]:.3f} (offline {baseline[k]:.3f})" for k in COMPARED if k in baseline]
    if degraded:
        message = "degraded beyond tolerance: " + ", ".join(
            f"{k} {metrics[k]:.3f} vs offline {baseline[k]:.3f}" for k in degraded
        )
    else:
        message = "within tolerance: " + ", ".join(parts) if parts else "no offline metrics to compare"
    if notes:
        message += " (" + "; ".join(notes) + ")"
    return PerformanceResult(
        "degraded" if degraded else "ok", message, total, n, metrics, dict(baseline), deltas, tuple(degraded)
    )
