"""The app database: promotion ledger, prediction log, feedback and monitoring results.
SQLAlchemy Core, so the same code runs on Postgres (tests, compose) and SQLite (demo).

The schema is versioned with Alembic (``ledgerline/migrations``): :func:`upgrade` brings a
database to the newest revision and runs on the first use of a database in a process.
A change to the tables below needs a new revision (``make migration MSG=...``). A family's own tables
live in its folder (``families/<stem>/tables.py``, on this module's :data:`metadata`); Alembic owns their
revisions too, and :func:`all_metadata` loads them so autogenerate sees every table."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from ledgerline.errors import LedgerlineError

logger = logging.getLogger(__name__)

metadata = sa.MetaData()


def all_metadata() -> sa.MetaData:
    """:data:`metadata` with every family's tables on it (``families/<stem>/tables.py``, where a family has one)."""
    from ledgerline.families import FAMILIES, family_module

    for name in FAMILIES:
        family_module(name, "tables")
    return metadata

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
#: The prediction log's JSON columns: Postgres ``json`` (the text, checked but not converted), not ``jsonb``.
#: Converting every logged row to jsonb cost Postgres about twice the CPU of the whole insert otherwise
#: (24 vs 11 ms per 1,000 credit rows by COPY), on the request rate; the readers (monitoring, a few
#: times a day) extract fields with the same ``->>``/``->`` operators. Revision 0007_predlog.
LogJSONType = sa.JSON()

promotion_ledger = sa.Table(
    "promotion_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),  # promote | reject | rollback | manual-promote |
    # retrain-request | unchanged | nothing-new (the last two: a run that registered nothing; a string, no migration)
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("previous_champion", sa.String(32), nullable=True),
    sa.Column("champion_after", sa.String(32), nullable=True),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("challenger_metrics", sa.JSON, nullable=True),
    sa.Column("champion_metrics", sa.JSON, nullable=True),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
)


# One row per served prediction, written by serving's batching writer; read by monitoring.
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("inputs", LogJSONType, nullable=False),  # the raw record as received (feature name -> value)
    sa.Column("outputs", LogJSONType, nullable=False),  # the family's answer (probability, decision, reasons, ...)
    sa.Column("score", sa.Float, nullable=True),  # the main score (credit: probability of default)
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("batch_id", sa.String(36), nullable=True),  # the batch job that scored it (None: an online request)
    sa.Index("ix_predictions_model_time", "model_name", "created_at"),
    sa.Index("ix_predictions_batch", "batch_id"),
)

# Actual outcomes, one per prediction (idempotent on prediction_id); labels may arrive days later.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),  # as the application sent it (e.g. "1"/"0")
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_feedback_model_time", "model_name", "received_at"),
)

# Feedback that arrived before its prediction's row (still in a worker's log buffer): serving moves
# it to ``feedback`` once the row is written. No model name yet, hence its own table.
feedback_pending = sa.Table(
    "feedback_pending",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# One row per monitoring job run (drift, performance), written by monitoring.
monitoring_results = sa.Table(
    "monitoring_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("job", sa.String(32), nullable=False),  # drift | performance
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),  # ok | drift | degraded | insufficient_data
    sa.Column("summary", JSONType, nullable=False),
    sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_monitoring_results_model_time", "model_name", "created_at"),
)

# One row per monitoring decision; the retrain DAG acts on rows with retrain and no acted_at, exactly once.
retrain_decisions = sa.Table(
    "retrain_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("retrain", sa.Boolean, nullable=False),  # True only when not suppressed
    sa.Column("reason", sa.String(32), nullable=True),  # performance | drift | feedback | schedule | NULL
    sa.Column("suppressed", sa.Boolean, nullable=False),  # a reason existed but the cooldown held it back
    sa.Column("evidence", JSONType, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("dag_run_id", sa.String(250), nullable=True),
    sa.Index("ix_retrain_decisions_model_time", "model_name", "decided_at"),
)


# One row per batch scoring job (serving/batch_jobs/): what to score, with which version, how far it got.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(36), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),  # the champion at submission, fixed for the job
    sa.Column("family", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False, index=True),  # sha256 of the caller's API key (never the key)
    sa.Column("state", sa.String(16), nullable=False),  # queued | running | succeeded | failed | cancelled
    sa.Column("input_uri", sa.Text, nullable=False),  # the object in the artifact store
    sa.Column("input_format", sa.String(16), nullable=False),  # csv | parquet
    sa.Column("output_format", sa.String(16), nullable=False),
    sa.Column("results_uri", sa.Text, nullable=False),  # prefix of the chunk objects
    sa.Column("chunk_rows", sa.Integer, nullable=False),
    sa.Column("max_error_share", sa.Float, nullable=False),
    sa.Column("rows_total", sa.BigInteger, nullable=True),
    sa.Column("rows_done", sa.BigInteger, nullable=False),  # rows read and committed (scored + failed)
    sa.Column("rows_failed", sa.BigInteger, nullable=False),  # rows rejected by validation (in the errors file)
    sa.Column("chunks_done", sa.Integer, nullable=False),
    sa.Column("results_header", sa.Text, nullable=True),  # CSV header line of the results (set by the first chunk)
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("dag_run_id", sa.String(250), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),  # task attempts that started on it
    sa.Column("worker", sa.String(200), nullable=True),  # host:pid of the attempt running it now
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

# One row per committed chunk of a batch: its objects are in the artifact store when the row exists.
batch_chunks = sa.Table(
    "batch_chunks",
    metadata,
    sa.Column("batch_id", sa.String(36), primary_key=True),
    sa.Column("chunk", sa.Integer, primary_key=True),
    sa.Column("first_row", sa.BigInteger, nullable=False),  # 1-based number of its first data row
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("scored", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),  # which task attempt committed it
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
)


def make_engine(url: str, *, pool_size: int = 4, max_overflow: int = 8) -> Engine:
    """An engine that notices dead connections and does not hang on an unreachable server."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    elif url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 5}
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = max_overflow
    return sa.create_engine(url, **kwargs)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL per process; the schema is migrated to the newest revision on first use."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


class SchemaError(LedgerlineError):
    """The app database's tables are not a schema Ledgerline knows; nothing was changed."""


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did."""

    before: str | None  # revision before; None: empty or created before migrations existed
    after: str  # the head revision
    adopted: bool  # the database was created before migrations and was stamped at the baseline

    @property
    def changed(self) -> bool:
        return self.adopted or self.before != self.after


#: Postgres advisory lock held (for one transaction) while migrating, so starters do not race.
MIGRATION_LOCK_KEY = zlib.crc32(b"ledgerline.migrations")


def _display(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def upgrade(target: str | Engine) -> Upgrade:
    """Bring the app database at ``target`` (a URL or an engine) to the newest revision.

    Idempotent, and safe when several processes start together: on Postgres the work
    runs in one transaction holding an advisory lock (DDL is transactional there, so a
    failed step leaves nothing behind); on SQLite in a ``BEGIN IMMEDIATE`` transaction,
    which holds the file's write lock. A database created by Ledgerline before
    migrations existed (its tables, no version table) is checked against revision
    0001 and stamped; if its tables differ, :class:`SchemaError` says how.
    """
    from ledgerline import migrations

    engine = make_engine(target, pool_size=1, max_overflow=0) if isinstance(target, str) else target
    head = migrations.head()
    try:
        with engine.connect() as conn:
            before = migrations.current(conn)
            conn.rollback()
            if before == head:  # the common case: no lock needed
                return Upgrade(before=before, after=head, adopted=False)
            if before is not None and not migrations.is_known(before):
                raise SchemaError(
                    f"the app database {_display(engine.url)} is at revision {before}, which this Ledgerline "
                    f"does not know (its newest is {head}): a newer release migrated it; run that release "
                    "or point LEDGERLINE_APP_DB_URL at another database"
                )
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            elif engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                before, after, adopted = migrations.upgrade(conn)
            except migrations.SchemaMismatch as exc:
                raise SchemaError(f"{_display(engine.url)}: {exc}") from exc
            conn.commit()
    finally:
        if isinstance(target, str):
            engine.dispose()
    result = Upgrade(before=before, after=after, adopted=adopted)
    if result.changed:
        logger.info("app database %s: %s -> %s%s", _display(engine.url), before or "unversioned", after,
                    " (adopted the schema created before migrations)" if adopted else "")
    return result


def current_revision(target: str | Engine) -> str | None:
    """The revision of the app database; None when it is empty or predates migrations. Changes nothing."""
    from ledgerline import migrations

    if isinstance(target, str) and target.startswith("sqlite"):
        path = sa.make_url(target).database
        if path and path != ":memory:" and not Path(path).exists():
            return None  # do not create the file just to look
    engine = make_engine(target, pool_size=1, max_overflow=0) if isinstance(target, str) else target
    try:
        with engine.connect() as conn:
            return migrations.current(conn)
    finally:
        if isinstance(target, str):
            engine.dispose()


def head_revision() -> str:
    """The newest revision the installed code knows."""
    from ledgerline import migrations

    return migrations.head()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def record_decision(
    url: str,
    *,
    model_name: str,
    version: str,
    action: str,
    passed: bool,
    reasons: list[str],
    trigger: str,
    previous_champion: str | None = None,
    champion_after: str | None = None,
    challenger_metrics: Mapping[str, float] | None = None,
    champion_metrics: Mapping[str, float] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    row = {
        "model_name": model_name,
        "version": str(version),
        "action": action,
        "passed": passed,
        "previous_champion": previous_champion,
        "champion_after": champion_after,
        "reasons": list(reasons),
        "challenger_metrics": _jsonable(dict(challenger_metrics) if challenger_metrics else None),
        "champion_metrics": _jsonable(dict(champion_metrics) if champion_metrics else None),
        "trigger": trigger,
        "run_id": run_id,
        "decided_at": datetime.now(UTC),
    }
    with engine_for(url).begin() as conn:
        result = conn.execute(promotion_ledger.insert().values(**row))
        row["id"] = result.inserted_primary_key[0] if result.inserted_primary_key else None
    return row


def ledger(url: str, model_name: str | None = None) -> list[dict[str, Any]]:
    """Ledger rows, oldest first."""
    q = sa.select(promotion_ledger).order_by(promotion_ledger.c.id)
    if model_name:
        q = q.where(promotion_ledger.c.model_name == model_name)
    with engine_for(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
