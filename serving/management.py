"""Model management behind ``/v1/models/...``: what the registry, the promotion ledger and the
monitoring tables say about a model (read here), and the writes (promote, rollback, retrain)
through a :class:`ModelManagement` the entry point hands to ``create_app``.

The writes need the training pipeline and Airflow, which sit above serving in the layers, so
serving only knows them by this protocol; ``ledgerline serve`` supplies
:class:`apps.management.PipelineManagement`. An app built without one answers the
write endpoints with 503.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import sqlalchemy as sa

from ledgerline import db, lineage
from ledgerline.errors import LedgerlineError
from ledgerline.registry import CHALLENGER, CHAMPION, client
from ledgerline.settings import Settings

#: the run metrics shown as a version's headline (the family's test metrics come first when present)
HEADLINE_PREFIX = "test_"


class ManagementError(LedgerlineError):
    """A management operation that cannot be done; ``kind`` chooses the HTTP status."""

    def __init__(self, message: str, kind: Literal["invalid", "not_found", "refused", "unavailable"]) -> None:
        super().__init__(message)
        self.kind = kind


STATUS_OF_KIND = {"invalid": 422, "not_found": 404, "refused": 409, "unavailable": 503}


@dataclass(frozen=True)
class Actor:
    """Who asks: the name the caller gives and the key it used."""

    name: str
    key: str  # "admin key" | "CLI"

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class ModelManagement(Protocol):
    def promote(self, name: str, version: str, *, reason: str, actor: Actor, override: bool) -> dict[str, Any]:
        """Move @champion to ``version`` (gate floors unless override); returns the ledger row."""
        ...

    def rollback(self, name: str, *, reason: str | None, actor: Actor) -> dict[str, Any]:
        """@champion back to the previous champion; returns the ledger row."""
        ...

    def retrain(self, name: str, *, note: str | None, actor: Actor) -> dict[str, Any]:
        """Trigger the family's retrain DAG with reason ``manual``: ``{"status", "dag_id", "dag_run_id", "state", "url"}``;
        status ``triggered``, or ``already requested`` when an earlier request's run is still pending (no new run)."""
        ...


# --------------------------------------------------------------------------- reads


def _mlflow_error_is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def _run_summary(c: Any, run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {"metrics": {}, "params": {}, "tags": {}}
    try:
        run = c.get_run(run_id)
    except Exception as exc:
        if _mlflow_error_is_missing(exc):
            return {"metrics": {}, "params": {}, "tags": {}}
        raise
    return {"metrics": dict(run.data.metrics), "params": dict(run.data.params), "tags": dict(run.data.tags)}


def _test_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k.removeprefix(HEADLINE_PREFIX): float(v) for k, v in metrics.items() if k.startswith(HEADLINE_PREFIX)}


def registered(platform: Settings, name: str) -> Any:
    """The registered model, or ManagementError(not_found)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(platform).get_registered_model(name)
    except MlflowException as exc:
        if _mlflow_error_is_missing(exc):
            raise ManagementError(f"no registered model named '{name}'; GET /v1/models lists the served ones", "not_found") from exc
        raise


def overview(platform: Settings, name: str) -> dict[str, Any]:
    """Family, champion and challenger versions with their headline (test) metrics."""
    rm = registered(platform, name)
    aliases = dict(getattr(rm, "aliases", {}) or {})
    c = client(platform)
    out: dict[str, Any] = {"family": None, CHAMPION: None, CHALLENGER: None}
    for alias in (CHAMPION, CHALLENGER):
        version = aliases.get(alias)
        if version is None:
            continue
        mv = c.get_model_version(name, str(version))
        out["family"] = out["family"] or mv.tags.get(lineage.FAMILY)
        run = _run_summary(c, mv.run_id)
        out[alias] = {
            "version": str(version),
            "metrics": _test_metrics(run["metrics"]),
            "decision_threshold": _float(run["tags"].get(lineage.DECISION_THRESHOLD)),
            "model_kind": run["tags"].get(lineage.MODEL_KIND),
        }
    return out


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def detail(platform: Settings, name: str) -> dict[str, Any]:
    """Versions (aliases, metrics, lineage, gate verdict), the aliases and the ledger of one model."""
    rm = registered(platform, name)
    c = client(platform)
    aliases = {k: str(v) for k, v in (getattr(rm, "aliases", {}) or {}).items()}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    versions = []
    for mv in sorted(c.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), reverse=True):
        run = _run_summary(c, mv.run_id)
        tags, vtags = run["tags"], dict(mv.tags)
        reasons = vtags.get(lineage.GATE_REASONS)
        versions.append({
            "version": str(mv.version),
            "aliases": sorted(by_version.get(str(mv.version), [])),
            "family": vtags.get(lineage.FAMILY),
            "created_at": mv.creation_timestamp,
            "run_id": mv.run_id,
            "metrics": _test_metrics(run["metrics"]),
            "model_kind": tags.get(lineage.MODEL_KIND),
            "decision_threshold": _float(tags.get(lineage.DECISION_THRESHOLD)),
            "lineage": {
                "snapshot_uri": tags.get(lineage.SNAPSHOT_URI),
                "snapshot_digest": tags.get(lineage.SNAPSHOT_DIGEST),
                "logical_date": tags.get(lineage.LOGICAL_DATE),
                "trigger": tags.get(lineage.TRIGGER),
                "validation": tags.get(lineage.VALIDATION),
                "airflow_run": tags.get(lineage.AIRFLOW_RUN),
            },
            "gate": {
                "decision": vtags.get(lineage.GATE_DECISION),
                "reasons": json.loads(reasons) if reasons else [],
                "champion_version": vtags.get(lineage.GATE_CHAMPION_VERSION),
            },
            "model_card": vtags.get(lineage.MODEL_CARD),
        })
    ledger = [jsonable_row(r) for r in db.ledger(platform.resolved_app_db_url(), name)]
    return {"name": name, "aliases": aliases, "versions": versions, "ledger": ledger}


def jsonable_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key, value in out.items():
        if hasattr(value, "isoformat"):
            out[key] = value.isoformat()
    return out


def performance(platform: Settings, name: str, limit: int) -> dict[str, Any]:
    """The latest monitoring result per job and decision, and their history (newest first)."""
    registered(platform, name)
    engine = db.engine_for(platform.resolved_app_db_url())
    mr, rd = db.monitoring_results, db.retrain_decisions
    with engine.connect() as conn:
        results = [jsonable_row(dict(r._mapping)) for r in conn.execute(
            sa.select(mr).where(mr.c.model_name == name).order_by(mr.c.id.desc()).limit(limit))]
        decisions = [jsonable_row(dict(r._mapping)) for r in conn.execute(
            sa.select(rd).where(rd.c.model_name == name).order_by(rd.c.id.desc()).limit(limit))]
    latest: dict[str, Any] = {}
    for row in results:
        latest.setdefault(row["job"], row)
    return {
        "name": name,
        "latest": {"drift": latest.get("drift"), "performance": latest.get("performance"),
                   "decision": decisions[0] if decisions else None},
        "history": {"results": results, "decisions": decisions},
    }
