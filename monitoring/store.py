"""Monitoring rows in the app database: ``monitoring_results`` and ``retrain_decisions`` (see ``ledgerline.db``)."""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ledgerline import db
from ledgerline.errors import LedgerlineError
from monitoring.decision import Decision

logger = logging.getLogger(__name__)


def utc(ts: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes; they were written as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def jsonable(value: Any) -> Any:
    """Plain JSON types only; NaN and infinities become null (Postgres JSONB refuses them)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(json.dumps(value, default=_default)))


def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return utc(v).isoformat()
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


def record_result(
    url: str,
    *,
    model_name: str,
    model_version: str,
    job: str,
    window_start: datetime,
    window_end: datetime,
    status: str,
    summary: dict[str, Any],
    mlflow_run_id: str | None,
    created_at: datetime,
) -> int:
    row = {
        "model_name": model_name,
        "model_version": str(model_version),
        "job": job,
        "window_start": utc(window_start),
        "window_end": utc(window_end),
        "status": status,
        "summary": jsonable(summary),
        "mlflow_run_id": mlflow_run_id,
        "created_at": utc(created_at),
    }
    with db.engine_for(url).begin() as conn:
        result = conn.execute(db.monitoring_results.insert().values(**row).returning(db.monitoring_results.c.id))
        return int(result.scalar_one())


def results(url: str, model_name: str, job: str | None = None) -> list[dict[str, Any]]:
    """Monitoring result rows of a model, oldest first."""
    t = db.monitoring_results
    q = sa.select(t).where(t.c.model_name == model_name).order_by(t.c.id)
    if job:
        q = q.where(t.c.job == job)
    with db.engine_for(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


@contextmanager
def decision_lock(url: str, model_name: str) -> Iterator[sa.Connection]:
    """A transaction that holds the model's decision lock (Postgres advisory lock), so two
    concurrent monitoring runs cannot both pass the cooldown check."""
    engine = db.engine_for(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            key = zlib.crc32(f"ledgerline.retrain:{model_name}".encode())
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        yield conn


def last_retrain(conn: sa.Connection, model_name: str, now: datetime) -> tuple[int, datetime] | None:
    """The latest decision (at or before ``now``) that said retrain, as (id, decided_at)."""
    t = db.retrain_decisions
    q = (
        sa.select(t.c.id, t.c.decided_at)
        .where(t.c.model_name == model_name, t.c.retrain.is_(True), t.c.decided_at <= utc(now))
        .order_by(t.c.decided_at.desc(), t.c.id.desc())
        .limit(1)
    )
    row = conn.execute(q).first()
    return (int(row.id), utc(row.decided_at)) if row else None


def insert_decision(
    conn: sa.Connection,
    *,
    model_name: str,
    model_version: str,
    retrain: bool,
    reason: str | None,
    suppressed: bool,
    evidence: dict[str, Any],
    decided_at: datetime,
) -> Decision:
    clean = jsonable(evidence)
    row = {
        "model_name": model_name,
        "model_version": str(model_version),
        "retrain": retrain,
        "reason": reason,
        "suppressed": suppressed,
        "evidence": clean,
        "decided_at": utc(decided_at),
    }
    decision_id = conn.execute(db.retrain_decisions.insert().values(**row).returning(db.retrain_decisions.c.id)).scalar_one()
    return Decision(int(decision_id), model_name, str(model_version), retrain, reason, suppressed,
                    clean, utc(decided_at))


def _to_decision(row: Any) -> Decision:
    evidence = row.evidence if isinstance(row.evidence, dict) else json.loads(row.evidence or "{}")
    return Decision(int(row.id), row.model_name, row.model_version, bool(row.retrain), row.reason,
                    bool(row.suppressed), evidence, utc(row.decided_at))


def decisions(url: str, model_name: str) -> list[Decision]:
    """Every decision of a model, oldest first."""
    t = db.retrain_decisions
    q = sa.select(t).where(t.c.model_name == model_name).order_by(t.c.decided_at, t.c.id)
    with db.engine_for(url).connect() as conn:
        return [_to_decision(r) for r in conn.execute(q)]


def pending(url: str, model_name: str) -> list[Decision]:
    """Retrain decisions nobody has acted on yet, oldest first."""
    t = db.retrain_decisions
    q = (
        sa.select(t)
        .where(t.c.model_name == model_name, t.c.retrain.is_(True), t.c.acted_at.is_(None))
        .order_by(t.c.decided_at, t.c.id)
    )
    with db.engine_for(url).connect() as conn:
        return [_to_decision(r) for r in conn.execute(q)]


def mark_acted(url: str, decision_id: int, dag_run_id: str, *, now: datetime | None = None) -> bool:
    """Claim a retrain decision for ``dag_run_id``. True when this call (or an earlier call with the
    same ``dag_run_id``) owns it; False when another DAG run acted on it first."""
    t = db.retrain_decisions
    acted_at = utc(now or datetime.now(UTC))
    with db.engine_for(url).begin() as conn:
        updated = conn.execute(
            sa.update(t)
            .where(t.c.id == decision_id, t.c.retrain.is_(True), t.c.acted_at.is_(None))
            .values(acted_at=acted_at, dag_run_id=dag_run_id)
        ).rowcount
        if updated:
            return True
        row = conn.execute(sa.select(t.c.retrain, t.c.dag_run_id).where(t.c.id == decision_id)).first()
    if row is None:
        raise LedgerlineError(f"there is no retrain decision #{decision_id}; list them with pending_retrain_decisions")
    if not row.retrain:
        raise LedgerlineError(f"decision #{decision_id} is not a retrain decision (no reason, or suppressed); nothing to act on")
    if row.dag_run_id == dag_run_id:
        return True
    logger.warning("decision #%s was already acted on by DAG run %s; %s leaves it", decision_id, row.dag_run_id, dag_run_id)
    return False
