"""Users' corrections of transaction categories: the rules store (app database) and the labelled
lines a retrain adds to its snapshot.

Conflict policy: **the latest correction wins.** Every correction of a merchant (its normalised
description, :func:`families.transaction_category.data.merchant_key`) is kept in ``category_corrections``; the
merchant's rule in ``category_rules`` takes the category of the newest one and counts them. An
admin's revert deactivates the rule and marks its corrections reverted (they then no longer go
into training either); reverting it again changes nothing; a later correction makes the rule active again.

Every change gives the rule the next ``version`` (one counter over all rules, under a lock), so a
serving worker asks only ``WHERE version > :seen`` to pick up what changed.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from families.transaction_category import tables
from ledgerline import db

if TYPE_CHECKING:
    import pandas as pd

    from features.spec import DatasetSpec

RULES_LOCK_KEY = zlib.crc32(b"ledgerline.category_rules")


@dataclass(frozen=True)
class Rule:
    model_name: str
    merchant_key: str
    category: str
    corrections: int
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "merchant": self.merchant_key, "category": self.category, "corrections": self.corrections,
            "active": self.active, "version": self.version,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


def _rule(row: Any) -> Rule:
    def utc(t: datetime) -> datetime:
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    return Rule(row.model_name, row.merchant_key, row.category, int(row.corrections), bool(row.active),
                int(row.version), utc(row.created_at), utc(row.updated_at))


def _lock_and_next_version(conn: sa.Connection) -> int:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": RULES_LOCK_KEY})
    r = tables.category_rules.c
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(r.version), 0))).scalar_one()) + 1


def record_correction(engine: Engine, model_name: str, merchant_key: str, category: str,
                      prediction_id: str | None, now: datetime | None = None) -> Rule:
    """Store one correction and update the merchant's rule (latest wins); returns the rule."""
    now = now or datetime.now(UTC)
    r = tables.category_rules.c
    with engine.begin() as conn:
        version = _lock_and_next_version(conn)
        conn.execute(tables.category_corrections.insert().values(
            model_name=model_name, merchant_key=merchant_key, category=category, prediction_id=prediction_id,
            received_at=now,
        ))
        where = (r.model_name == model_name) & (r.merchant_key == merchant_key)
        existing = conn.execute(sa.select(tables.category_rules).where(where)).first()
        if existing is None:
            conn.execute(tables.category_rules.insert().values(
                model_name=model_name, merchant_key=merchant_key, category=category, corrections=1, active=True,
                version=version, created_at=now, updated_at=now,
            ))
        else:
            conn.execute(tables.category_rules.update().where(where).values(
                category=category, corrections=existing.corrections + 1, active=True, version=version, updated_at=now,
            ))
        row = conn.execute(sa.select(tables.category_rules).where(where)).one()
    return _rule(row)


class Reverted(NamedTuple):
    """What :func:`revert_rule` did: the rule as it is now, and whether this call changed it."""

    rule: Rule
    changed: bool  # False: the rule was reverted already (no new version, nothing written)


def revert_rule(engine: Engine, model_name: str, merchant_key: str, now: datetime | None = None) -> Reverted | None:
    """Deactivate a merchant's rule (and mark its corrections reverted); None when there is no such rule.

    Reverting a rule that is reverted already is a no-op: the same version (workers have nothing new
    to fetch), the corrections keep the time of the first revert."""
    now = now or datetime.now(UTC)
    r, c = tables.category_rules.c, tables.category_corrections.c
    where = (r.model_name == model_name) & (r.merchant_key == merchant_key)
    with engine.begin() as conn:
        version = _lock_and_next_version(conn)
        current = conn.execute(sa.select(tables.category_rules).where(where)).first()
        if current is None:
            return None
        if not current.active:
            return Reverted(_rule(current), changed=False)
        conn.execute(tables.category_rules.update().where(where).values(active=False, version=version, updated_at=now))
        conn.execute(tables.category_corrections.update().where(
            (c.model_name == model_name) & (c.merchant_key == merchant_key) & c.reverted_at.is_(None)
        ).values(reverted_at=now))
        row = conn.execute(sa.select(tables.category_rules).where(where)).one()
    return Reverted(_rule(row), changed=True)


def rules_since(engine: Engine, model_name: str, version: int) -> list[Rule]:
    """The rules of ``model_name`` changed after ``version`` (active or not), oldest change first."""
    r = tables.category_rules.c
    q = sa.select(tables.category_rules).where(r.model_name == model_name, r.version > version).order_by(r.version)
    with engine.connect() as conn:
        return [_rule(row) for row in conn.execute(q)]


def latest_version(engine: Engine, model_name: str) -> int:
    r = tables.category_rules.c
    q = sa.select(sa.func.coalesce(sa.func.max(r.version), 0)).where(r.model_name == model_name)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def labelled_lines(url: str, model_name: str, spec: DatasetSpec) -> pd.DataFrame:
    """The logged lines of ``model_name`` that got feedback (a category), as raw rows in the spec's columns,
    with ``__id__`` (``corr-<prediction_id>``) and ``__corrected__`` (the label differs from the model's
    category). Lines whose correction an admin reverted are left out; so are labels not among the classes."""
    import pandas as pd

    p, f, c = db.predictions.c, db.feedback.c, tables.category_corrections.c
    reverted = sa.select(c.prediction_id).where(c.model_name == model_name, c.reverted_at.is_not(None),
                                                c.prediction_id.is_not(None))
    q = (
        sa.select(p.prediction_id, p.inputs, p.outputs, f.label)
        .select_from(db.predictions.join(db.feedback, f.prediction_id == p.prediction_id))
        .where(p.model_name == model_name, p.prediction_id.not_in(reverted))
        .order_by(p.created_at)
    )
    engine = db.engine_for(url)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    classes = set(spec.classes)
    out: list[dict[str, Any]] = []
    for row in rows:
        if row.label not in classes:
            continue
        inputs = row.inputs if isinstance(row.inputs, dict) else json.loads(row.inputs)
        outputs = row.outputs if isinstance(row.outputs, dict) else json.loads(row.outputs)
        rec = {name: inputs.get(name) for name in spec.feature_names}
        rec[spec.target or "category"] = row.label
        rec["__id__"] = f"corr-{row.prediction_id}"
        rec["__corrected__"] = row.label != outputs.get("model_category")
        out.append(rec)
    columns = [*spec.feature_names, spec.target or "category", "__id__", "__corrected__"]
    return pd.DataFrame(out, columns=columns)
