"""The monitoring DAG's tasks: which served models it checks, one monitoring run per model, and the
retrain DAG runs its decisions trigger (once per decision)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.orchestration.config import retrain_dag_id, triggered_run_id
from ledgerline import lineage
from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitoredModel:
    model_name: str
    family: str

    def as_dict(self) -> dict[str, str]:
        return {"model_name": self.model_name, "family": self.family}


def monitored_models(raw: str | None, *, family_of: Callable[[str], str | None] | None = None) -> list[MonitoredModel]:
    """Parse ``name[=family], ...``; without a family, the name itself or ``family_of(name)`` must give one."""
    from ledgerline.families import FAMILIES

    if not raw or not raw.strip():
        return [MonitoredModel(f, f) for f in FAMILIES]
    out: list[MonitoredModel] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, _, family = (s.strip() for s in item.partition("="))
        family = family or (name if name in FAMILIES else (family_of(name) if family_of else None)) or ""
        if family not in FAMILIES:
            raise LedgerlineError(
                f"monitored model '{name}': unknown family '{family or '?'}'; "
                f"write it as {name}=<family> with one of {sorted(FAMILIES)}"
            )
        out.append(MonitoredModel(name, family))
    return out


def registry_family(settings: Settings) -> Callable[[str], str | None]:
    """``family_of`` for :func:`monitored_models`: the ``ledgerline.family`` tag of the model's @champion."""

    def family_of(name: str) -> str | None:
        from mlflow.exceptions import MlflowException

        from ledgerline.registry import CHAMPION, client

        try:
            return client(settings).get_model_version_by_alias(name, CHAMPION).tags.get(lineage.FAMILY)
        except MlflowException:
            return None

    return family_of


def _decision_dict(decision: Any, family: str) -> dict[str, Any]:
    decided_at = getattr(decision, "decided_at", None)
    decision_id = decision.decision_id
    return {
        "decision_id": decision_id if isinstance(decision_id, int | str) else str(decision_id),
        "model_name": decision.model_name,
        "model_version": None if decision.model_version is None else str(decision.model_version),
        "family": family,
        "retrain": bool(decision.retrain),
        "reason": decision.reason,
        "suppressed": bool(getattr(decision, "suppressed", False)),
        "decided_at": decided_at.isoformat() if isinstance(decided_at, datetime) else decided_at,
    }


def monitor(settings: Settings, model: Mapping[str, str], now: datetime | None) -> dict[str, Any]:
    """Run the drift and performance jobs for one served model; return its decision."""
    from monitoring.jobs import run_monitoring

    decision = run_monitoring(settings, model["model_name"], now=now, expected_family=model["family"])
    logger.info("monitoring %s: %s", model["model_name"], decision.summary())
    return _decision_dict(decision, model["family"])


def retrain_plan(settings: Settings, models: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """TriggerDagRunOperator kwargs for every retrain decision not acted on yet (today's and missed ones).

    The triggered run's logical date and the end of its data window (conf ``interval_end``) are the
    decision's time (the monitoring run's logical date), so a retrain asked for by monitoring on date D
    reads the data as of D, also when D is in the past (a backfill).
    """
    from monitoring.jobs import pending_retrain_decisions
    from training.pipeline import TRIGGERS

    plan: list[dict[str, Any]] = []
    for model in models:
        for d in pending_retrain_decisions(settings, model["model_name"]):
            reason = next((r for r in re.split(r"[^a-z]+", str(d.reason or "")) if r in TRIGGERS), "schedule")
            decision_id = _decision_dict(d, model["family"])["decision_id"]
            decided_at = d.decided_at.isoformat() if isinstance(d.decided_at, datetime) else d.decided_at
            plan.append(
                {
                    "trigger_dag_id": retrain_dag_id(model["family"]),
                    "trigger_run_id": triggered_run_id(reason, model["model_name"], decision_id),
                    # the retrain reads the data as of the decision (a backfilled monitoring run's date, not today):
                    # its logical date, and its window's end (a triggered run has no data interval of its own)
                    "logical_date": decided_at,
                    "conf": {"reason": reason, "model_name": model["model_name"], "decision_id": decision_id,
                             "interval_end": decided_at},
                }
            )
            logger.info("retrain %s (%s): decision %s", model["model_name"], reason, decision_id)
    return plan


def mark_triggered(settings: Settings, plan: Sequence[Mapping[str, Any]]) -> list[str]:
    """Record on each decision the DAG run that acts on it; returns those run ids."""
    from monitoring.jobs import mark_acted

    for item in plan:
        mark_acted(settings, item["conf"]["decision_id"], item["trigger_run_id"])
    return [str(item["trigger_run_id"]) for item in plan]
