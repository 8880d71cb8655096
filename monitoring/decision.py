"""The retrain decision and the rules that make it (pure functions; storage is in :mod:`monitoring.store`).

Reason priority: ``performance`` (labels show the model is worse) over ``drift`` (the
population moved) over ``feedback`` (at least ``retrain_after_labels`` labels arrived since the
champion was trained) over ``schedule`` (the champion is older than ``max_champion_age_days``).
A cooldown after a retrain decision suppresses later ones for ``cooldown_days``; a
suppressed decision keeps its reason and evidence but has ``retrain=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

REASONS = ("performance", "drift", "feedback", "schedule")


@dataclass(frozen=True)
class Decision:
    decision_id: int
    model_name: str
    model_version: str
    retrain: bool  # True only when a reason exists and the cooldown did not suppress it
    reason: str | None  # performance | drift | feedback | schedule | None
    suppressed: bool
    evidence: dict[str, Any]  # JSON-able: drift and performance summaries, MLflow run ids and URLs, cooldown
    decided_at: datetime

    def summary(self) -> str:
        """One line for logs, the CLI and the DAG."""
        head = f"{self.model_name} v{self.model_version}"
        why = _why(self.reason, self.evidence)
        if self.retrain:
            verdict = f"RETRAIN ({why})"
        elif self.suppressed:
            cd = self.evidence.get("cooldown", {})
            verdict = (
                f"retrain suppressed by cooldown ({why}; retrain decision #{cd.get('last_retrain_decision_id')} "
                f"at {cd.get('last_retrain_at')}, cooldown {cd.get('cooldown_days')} days)"
            )
        else:
            drift = self.evidence.get("drift", {}).get("status", "not run")
            perf = self.evidence.get("performance", {}).get("status", "not run")
            verdict = f"no retrain (drift: {drift}, performance: {perf})"
        return f"{head}: {verdict} [decision #{self.decision_id}]"


def _why(reason: str | None, evidence: dict[str, Any]) -> str:
    if reason == "drift":
        d = evidence.get("drift", {})
        feats = d.get("drifted_features") or []
        psi = d.get("psi", {})
        named = ", ".join(f"{f} PSI {psi.get(f, float('nan')):.2f}" for f in feats) or "no single feature"
        extra = f"; score PSI {d['score_psi']:.2f}" if d.get("score_drifted") else ""
        return f"drift: {named}{extra}"
    if reason == "performance":
        perf = evidence.get("performance", {})
        return "performance: " + perf.get("message", "degraded")
    if reason == "feedback":
        f = evidence.get("feedback", {})
        return (f"feedback: {f.get('new_labels', '?')} labels since v{f.get('champion_version', '?')} was trained "
                f">= {f.get('retrain_after_labels')}")
    if reason == "schedule":
        s = evidence.get("schedule", {})
        return f"schedule: champion {s.get('champion_age_days', '?')} days old > {s.get('max_champion_age_days')}"
    return "no reason"


def choose_reason(
    drift_status: str | None,
    performance_status: str | None,
    *,
    champion_age_days: float | None,
    max_age_days: float | None,
    new_labels: int | None = None,
    retrain_after_labels: int | None = None,
) -> str | None:
    """The retrain reason a monitoring run found, before the cooldown (None: nothing to do)."""
    if performance_status == "degraded":
        return "performance"
    if drift_status == "drift":
        return "drift"
    if retrain_after_labels is not None and new_labels is not None and new_labels >= retrain_after_labels:
        return "feedback"
    if max_age_days is not None and champion_age_days is not None and champion_age_days > max_age_days:
        return "schedule"
    return None


def in_cooldown(last_retrain_at: datetime | None, now: datetime, cooldown_days: float) -> bool:
    """Whether a retrain decision at ``last_retrain_at`` still holds later ones back at ``now``."""
    if last_retrain_at is None or cooldown_days <= 0:
        return False
    return now - last_retrain_at < timedelta(days=cooldown_days)
