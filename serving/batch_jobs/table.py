"""Batch scoring jobs, the table: one row of ``batches`` (app database) per job, one row of
``batch_chunks`` per committed chunk, and the names of a job's objects in the artifact store
(see :mod:`serving.batch_jobs`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledgerline import db
from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    from serving.batch import ScoredChunk

BATCH_DAG_ID = "ledgerline_batch_score"
SCHEDULED_DAG_ID = "ledgerline_batch_daily"
FORMATS = ("csv", "parquet")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PREDICTION_ID = "prediction_id"  # the results' last column: send it back with POST /v1/feedback
SCHEDULE_OWNER = "schedule"


class BatchError(LedgerlineError):
    """A batch job cannot go on (a permanent problem: retrying the task will not help)."""


def owner_of(api_key: bytes | str) -> str:
    """What a batch keeps of its caller: the SHA-256 of the API key (never the key)."""
    raw = api_key.encode() if isinstance(api_key, str) else api_key
    return hashlib.sha256(raw).hexdigest()


def new_batch_id() -> str:
    return str(uuid.uuid4())


def prefix(batch_id: str) -> str:
    return f"batches/{batch_id}"


def input_key(batch_id: str, fmt: str) -> str:
    return f"{prefix(batch_id)}/input.{fmt}"


def chunk_key(batch_id: str, index: int, fmt: str) -> str:
    return f"{prefix(batch_id)}/results/{index:06d}.{fmt}"


def errors_key(batch_id: str, index: int) -> str:
    return f"{prefix(batch_id)}/errors/{index:06d}.csv"


def errors_header_key(batch_id: str) -> str:
    return f"{prefix(batch_id)}/errors/header.csv"


def format_of(name: str) -> str | None:
    low = name.lower()
    return "parquet" if low.endswith((".parquet", ".pq")) else "csv" if low.endswith(".csv") else None


# --------------------------------------------------------------------------- prediction ids


_LOW62 = (1 << 62) - 1


def batch_prediction_ids(batch_id: str, created_ms: int, rows: Iterable[int]) -> list[str]:
    """Prediction ids of the batch's rows numbered ``rows`` (1-based): UUIDv7 layout (the batch's
    creation time, then bits of the batch id's hash, the row number counting up), the same every
    time they are computed, so a re-scored chunk writes the same log rows again."""
    digest = int.from_bytes(hashlib.sha256(batch_id.encode()).digest()[:10], "big")
    head = (created_ms << 80) | (0x7 << 76) | (((digest >> 62) & 0xFFF) << 64) | (0b10 << 62)
    base = digest & _LOW62
    out = []
    for row in rows:
        h = f"{head | ((base + row) & _LOW62):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


# --------------------------------------------------------------------------- the batches table


@dataclass(frozen=True)
class Batch:
    batch_id: str
    model_name: str
    model_version: str
    family: str
    owner: str
    state: str
    input_uri: str
    input_format: str
    output_format: str
    results_uri: str
    chunk_rows: int
    max_error_share: float
    rows_total: int | None
    rows_done: int
    rows_failed: int
    chunks_done: int
    results_header: str | None
    error: str | None
    cancel_requested: bool
    dag_run_id: str | None
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/batches/{id}`` shows (no owner hash, no worker)."""
        total = self.rows_total
        return {
            "batch_id": self.batch_id,
            "model": self.model_name,
            "version": self.model_version,
            "state": self.state,
            "rows_total": total,
            "rows_done": self.rows_done,
            "rows_scored": self.rows_done - self.rows_failed,
            "rows_failed": self.rows_failed,
            "progress": round(self.rows_done / total, 4) if total else (1.0 if self.state == "succeeded" else 0.0),
            "chunks_done": self.chunks_done,
            "input_format": self.input_format,
            "output_format": self.output_format,
            "max_error_share": self.max_error_share,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "results": f"/v1/batches/{self.batch_id}/results",
            "errors": f"/v1/batches/{self.batch_id}/errors",
        }


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def batch_of(row: Any) -> Batch:
    values = dict(row._mapping)
    for k in ("created_at", "started_at", "updated_at", "finished_at"):
        values[k] = _utc(values[k])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Batch(**values)


def create_batch(
    engine: Engine,
    *,
    batch_id: str,
    model_name: str,
    model_version: str,
    family: str,
    owner: str,
    input_uri: str,
    input_format: str,
    output_format: str,
    results_uri: str,
    chunk_rows: int,
    max_error_share: float,
    rows_total: int | None,
) -> Batch:
    """A new queued job; with an existing ``batch_id`` the existing job (scheduled runs are idempotent)."""
    now = datetime.now(UTC)
    values = {
        "batch_id": batch_id, "model_name": model_name, "model_version": model_version, "family": family,
        "owner": owner, "state": "queued", "input_uri": input_uri, "input_format": input_format,
        "output_format": output_format, "results_uri": results_uri, "chunk_rows": chunk_rows,
        "max_error_share": max_error_share, "rows_total": rows_total, "rows_done": 0, "rows_failed": 0,
        "chunks_done": 0, "results_header": None, "error": None, "cancel_requested": False, "dag_run_id": None,
        "attempts": 0, "worker": None, "created_at": now, "started_at": None, "updated_at": now, "finished_at": None,
    }
    with engine.begin() as conn:
        existing = conn.execute(sa.select(db.batches).where(db.batches.c.batch_id == batch_id)).one_or_none()
        if existing is not None:
            return batch_of(existing)
        conn.execute(db.batches.insert().values(**values))
        row = conn.execute(sa.select(db.batches).where(db.batches.c.batch_id == batch_id)).one()
    return batch_of(row)


def get_batch(engine: Engine, batch_id: str, owner: str | None = None) -> Batch | None:
    """The job, or None when there is none (or it belongs to another caller than ``owner``)."""
    q = sa.select(db.batches).where(db.batches.c.batch_id == batch_id)
    if owner is not None:
        q = q.where(db.batches.c.owner == owner)
    with engine.connect() as conn:
        row = conn.execute(q).one_or_none()
    return batch_of(row) if row is not None else None


def update_batch(engine: Engine, batch_id: str, only_if_active: bool = True, **values: Any) -> bool:
    t = db.batches
    q = t.update().where(t.c.batch_id == batch_id).values(updated_at=datetime.now(UTC), **values)
    if only_if_active:
        q = q.where(t.c.state.in_(("queued", "running")))
    with engine.begin() as conn:
        return bool(conn.execute(q).rowcount)


def set_dag_run(engine: Engine, batch_id: str, run_id: str) -> None:
    update_batch(engine, batch_id, only_if_active=False, dag_run_id=run_id)


def finish(engine: Engine, batch_id: str, state: str, error: str | None = None) -> bool:
    """Move an active job to a final state; False when it had one already."""
    assert state in TERMINAL
    return update_batch(engine, batch_id, state=state, error=error, finished_at=datetime.now(UTC), worker=None)


def request_cancel(engine: Engine, batch_id: str) -> None:
    """A queued job is cancelled at once; a running one stops after its current chunk."""
    t = db.batches
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(t.update().where(t.c.batch_id == batch_id, t.c.state == "queued")
                     .values(state="cancelled", cancel_requested=True, finished_at=now, updated_at=now))
        conn.execute(t.update().where(t.c.batch_id == batch_id, t.c.state == "running")
                     .values(cancel_requested=True, updated_at=now))


@dataclass(frozen=True)
class ChunkRow:
    chunk: int
    first_row: int
    rows: int
    scored: int
    failed: int
    attempt: int


def committed_chunks(engine: Engine, batch_id: str) -> list[ChunkRow]:
    t = db.batch_chunks
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.chunk, t.c.first_row, t.c.rows, t.c.scored, t.c.failed, t.c.attempt)
            .where(t.c.batch_id == batch_id).order_by(t.c.chunk)
        ).all()
    return [ChunkRow(*r) for r in rows]



def commit_chunk(engine: Engine, batch: Batch, chunk: ScoredChunk, attempt: int, header: str | None) -> Batch:
    """The chunk's row and counts in one transaction; returns the job as it is now."""
    t, c = db.batches, db.batch_chunks
    now = datetime.now(UTC)
    scored = chunk.rows - len(chunk.rejected_rows)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(c.c.chunk).where(c.c.batch_id == batch.batch_id, c.c.chunk == chunk.index)
                              ).one_or_none()
        if exists is None:
            conn.execute(c.insert().values(batch_id=batch.batch_id, chunk=chunk.index, first_row=chunk.first_row,
                                           rows=chunk.rows, scored=scored, failed=len(chunk.rejected_rows),
                                           attempt=attempt, committed_at=now))
            conn.execute(t.update().where(t.c.batch_id == batch.batch_id).values(
                rows_done=t.c.rows_done + chunk.rows, rows_failed=t.c.rows_failed + len(chunk.rejected_rows),
                chunks_done=t.c.chunks_done + 1, updated_at=now,
                results_header=sa.func.coalesce(t.c.results_header, header),
            ))
        row = conn.execute(sa.select(db.batches).where(t.c.batch_id == batch.batch_id)).one()
    return batch_of(row)


def dated_batch_id(model_name: str, input_uri: str) -> str:
    """One job per model and input object: a re-run of the same logical date finds it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline-batch:{model_name}:{input_uri}"))


def as_dict(batch: Batch) -> dict[str, Any]:
    return asdict(batch)
