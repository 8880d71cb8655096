"""Label-based performance: the family's live metrics of the champion on labelled predictions
(e.g. ROC-AUC, PR-AUC, calibration error of a classifier; alert precision of a detector), each
compared with the champion's offline test metric of the same name by the family's rule; and the
family's label-free window checks (e.g. the alert rate against its band), which degrade it too.

Labels arrive late. A prediction counts only when its label window has closed, that
is when it is at least ``label_window_days`` old; the performance window is the
``performance_window_days`` (default ``window_days``) before that point. Labels that
arrived after ``now`` are ignored, so a rerun for a past ``now`` sees what was known then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitoring.family import InsufficientLabels
from monitoring.settings import MonitoringSettings

if TYPE_CHECKING:
    import numpy as np

    from monitoring.family import MonitoringFamily


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
    window: WindowCheck | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "baseline": {k: round(v, 6) for k, v in self.baseline.items()},
            "deltas": {k: round(v, 6) for k, v in self.deltas.items()},
            "degraded": list(self.degraded),
        }
        if self.window is not None:
            out["window_check"] = self.window.summary()
        return out


def evaluate_performance(
    y: np.ndarray,
    p: np.ndarray,
    baseline: Mapping[str, float],
    mon: MonitoringSettings,
    *,
    family: MonitoringFamily,
    outputs: Sequence[Mapping[str, object]] | None = None,
    predictions: int | None = None,
) -> PerformanceResult:
    """The family's live metrics on the labelled window, each compared by its :class:`MetricRule`
    (direction and tolerance) with the champion's offline test metric of the same name."""
    import numpy as np

    y = np.asarray(y)  # as the label codec decoded them: 0/1, class names, numbers
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
    try:
        metrics = family.live_metrics(y, np.asarray(p, dtype=np.float64), outputs)
    except InsufficientLabels as exc:
        return PerformanceResult("insufficient_data", f"not enough data: {exc}", total, n, baseline=dict(baseline))
    rules = family.performance_rules(mon)
    deltas: dict[str, float] = {}
    degraded: list[str] = []
    notes: list[str] = []
    compared: list[str] = []
    for rule in rules:
        name = rule.metric
        if name not in metrics:
            if rule.required:
                notes.append(f"no live {name}")
            continue
        if name not in baseline:
            notes.append(f"no offline {name} to compare")
            continue
        compared.append(name)
        deltas[name] = metrics[name] - baseline[name]
        if rule.tolerance is None:
            continue
        ok, _ = rule.check_against(metrics[name], baseline[name], "offline test")
        if not ok:
            degraded.append(name)
    parts = [f"{k} {metrics[k]:.3f} (offline {baseline[k]:.3f})" for k in compared]
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


@dataclass(frozen=True)
class WindowCheck:
    """Label-free checks of the prediction log window (e.g. the alert rate against its band)."""

    status: str  # ok | degraded | insufficient_data
    message: str
    rows: int
    metrics: dict[str, float] = field(default_factory=dict)
    breached: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "rows": self.rows,
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "breached": list(self.breached),
        }


def evaluate_window(
    scores: np.ndarray,
    outputs: Sequence[Mapping[str, object]],
    baseline: Mapping[str, float],
    mon: MonitoringSettings,
    *,
    family: MonitoringFamily,
) -> WindowCheck | None:
    """The family's window rules on the window's predictions; None when the family has none."""
    rules = family.window_rules(mon)
    if not rules:
        return None
    n = len(outputs)
    if n < mon.min_current_rows:
        return WindowCheck(
            "insufficient_data",
            f"not enough data: {n} predictions in the window, at least {mon.min_current_rows} needed "
            f"(LEDGERLINE_MONITORING_MIN_CURRENT_ROWS); no window check",
            n,
        )
    metrics = family.window_metrics(scores, outputs, baseline)
    breached: list[str] = []
    parts: list[str] = []
    missing: list[str] = []
    for rule in rules:
        if rule.metric not in metrics:
            if rule.required:
                missing.append(rule.metric)
            continue
        ok, text = rule.check_absolute(metrics[rule.metric])
        parts.append(text)
        if not ok:
            breached.append(rule.metric)
    if missing and not breached:
        return WindowCheck(
            "insufficient_data",
            f"not enough data: {', '.join(missing)} cannot be computed (the champion's offline metrics lack "
            f"what they need: {sorted(baseline) or 'none recorded'})",
            n,
            metrics,
        )
    status = "degraded" if breached else "ok"
    head = "window check failed" if breached else "window check passed"
    return WindowCheck(status, f"{head}: " + "; ".join(parts), n, metrics, tuple(breached))


def with_window(result: PerformanceResult, window: WindowCheck | None) -> PerformanceResult:
    """The performance result with the window check folded in: a breached window rule degrades it."""
    from dataclasses import replace

    if window is None:
        return result
    status = result.status
    if window.status == "degraded":
        status = "degraded"
        message = f"{window.message}; labels: {result.message}"
    else:
        message = f"{result.message}; {window.message}"
    return replace(
        result,
        status=status,
        message=message,
        degraded=result.degraded + tuple(f"window:{m}" for m in window.breached),
        window=window,
    )
