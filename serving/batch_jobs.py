"""Batch scoring jobs: a file in the artifact store scored chunk by chunk, resumable, with progress.

A job is one row of ``batches`` (app database) and objects under ``<artifact store>/batches/<id>/``:

    input.csv | input.parquet          the uploaded file (or none: ``input_uri`` names an object)
    results/000000.csv ...             the scored rows of chunk 0, 1, ... (CSV without header, or Parquet)
    errors/000000.csv ...              the rejected rows of a chunk with the reason (CSV without header)
    errors/header.csv                  the errors file's header line

:func:`run_batch` (the Airflow task body) scores with the engine of ``ledgerline score``
(:func:`serving.batch.scored_chunks`) using the version fixed at submission. Each chunk is
*committed* before the next is scored: its objects are written, its rows go to the prediction
log (ids derived from the batch id and the row number, so rewriting them is a no-op), then
one transaction inserts its ``batch_chunks`` row and adds its counts to the job. A killed or
retried task starts after the last committed chunk: rows are neither lost nor doubled.

A job fails when more than ``max_error_share`` of its rows are rejected (at once when the
rejected rows already exceed that share of the whole file), or on a permanent error (bad
file, model gone); its committed chunks stay downloadable. A cancel request stops it after
the chunk being scored.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledgerline import db
from ledgerline.artifact_store import ArtifactStore
from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    import pyarrow as pa

    from ledgerline.settings import Settings
    from serving.batch import LoadedChampion, ScoredChunk
    from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

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


def _batch(row: Any) -> Batch:
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
            return _batch(existing)
        conn.execute(db.batches.insert().values(**values))
    return Batch(**values)  # type: ignore[arg-type]


def get_batch(engine: Engine, batch_id: str, owner: str | None = None) -> Batch | None:
    """The job, or None when there is none (or it belongs to another caller than ``owner``)."""
    q = sa.select(db.batches).where(db.batches.c.batch_id == batch_id)
    if owner is not None:
        q = q.where(db.batches.c.owner == owner)
    with engine.connect() as conn:
        row = conn.execute(q).one_or_none()
    return _batch(row) if row is not None else None


def _update(engine: Engine, batch_id: str, only_if_active: bool = True, **values: Any) -> bool:
    t = db.batches
    q = t.update().where(t.c.batch_id == batch_id).values(updated_at=datetime.now(UTC), **values)
    if only_if_active:
        q = q.where(t.c.state.in_(("queued", "running")))
    with engine.begin() as conn:
        return bool(conn.execute(q).rowcount)


def set_dag_run(engine: Engine, batch_id: str, run_id: str) -> None:
    _update(engine, batch_id, only_if_active=False, dag_run_id=run_id)


def finish(engine: Engine, batch_id: str, state: str, error: str | None = None) -> bool:
    """Move an active job to a final state; False when it had one already."""
    assert state in TERMINAL
    return _update(engine, batch_id, state=state, error=error, finished_at=datetime.now(UTC), worker=None)


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


# --------------------------------------------------------------------------- chunk objects


def _csv_body(table: pa.Table, header: bool) -> bytes:
    """A table as ``ledgerline score`` writes CSV: minimal quoting, booleans as true/false."""
    frame = table.to_pandas()
    for name, col in frame.items():
        if col.dtype == bool:
            frame[name] = col.map({True: "true", False: "false"})
    buf = io.StringIO()
    frame.to_csv(buf, header=header, index=False, lineterminator="\n")
    return buf.getvalue().encode()


def _parquet_body(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _errors_body(rows: list[int], reasons: list[str], frame: Any, header: list[str] | None) -> bytes:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header is not None:
        w.writerow(header)
    values = frame.astype(object).where(frame.notna(), "").to_numpy().tolist()
    for r, why, vals in zip(rows, reasons, values, strict=True):
        w.writerow([r, why, *vals])
    return buf.getvalue().encode()


def _log_entry(batch: Batch, chunk: ScoredChunk, score_column: str, seconds: float) -> Any:
    from serving.jsontext import json_rows
    from serving.store import LogEntry

    clean, answers = chunk.clean, chunk.answers
    created_ms = int(batch.created_at.timestamp() * 1000)
    ids = batch_prediction_ids(batch.batch_id, created_ms, (int(i) + 1 for i in clean.index))
    scores = answers[score_column].astype(float).tolist() if len(answers) else []
    return LogEntry(
        batch.model_name, batch.model_version, datetime.now(UTC), ids,
        json_rows(clean), json_rows(answers), scores,
        round(seconds * 1000.0 / max(1, len(ids)), 3), batch_id=batch.batch_id,
    ), ids


def _commit_chunk(engine: Engine, batch: Batch, chunk: ScoredChunk, attempt: int, header: str | None) -> Batch:
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
    return _batch(row)


# --------------------------------------------------------------------------- running a job


def run_batch(
    platform: Settings,
    batch_id: str,
    *,
    attempt: int = 1,
    serving: ServingSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Score the job ``batch_id`` from its last committed chunk on; returns its final state.

    Raises BatchError for permanent problems after marking the job failed; other exceptions
    (database, artifact store, registry away) leave the job running for the task's retry.
    """
    from ledgerline.artifact_store import artifact_store
    from serving.batch import ScoringError, load_champion, offline_settings, open_source, scored_chunks
    from serving.store import write_predictions

    engine = db.engine_for(platform.resolved_app_db_url())
    batch = get_batch(engine, batch_id)
    if batch is None:
        raise BatchError(f"no batch job {batch_id} in the app database {engine.url.render_as_string(hide_password=True)}")
    if batch.terminal:
        logger.info("batch %s is %s already; nothing to do", batch_id, batch.state)
        return batch.state
    if batch.cancel_requested:
        finish(engine, batch_id, "cancelled")
        return "cancelled"
    t = db.batches
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(t.update().where(t.c.batch_id == batch_id, t.c.state.in_(("queued", "running"))).values(
            state="running", attempts=t.c.attempts + 1, worker=f"{socket.gethostname()}:{os.getpid()}",
            started_at=sa.func.coalesce(t.c.started_at, now), updated_at=now,
        ))
    store = artifact_store(platform)
    key = store.key_of(batch.input_uri)
    if key is None:
        _fail(engine, batch_id, f"the input {batch.input_uri} is not in the artifact store {store.root}")
    assert key is not None
    say = progress or (lambda msg: logger.info("batch %s: %s", batch_id, msg))
    workdir = Path(tempfile.mkdtemp(prefix="ledgerline-batch-"))
    loaded: LoadedChampion | None = None
    try:
        try:
            local = store.local_path(key)
            if local is None or not local.is_file():
                local = store.download(key, workdir / f"input.{batch.input_format}")
            else:  # keep the job's suffix: open_source picks the reader by it
                link = workdir / f"input.{batch.input_format}"
                link.symlink_to(local.resolve())
                local = link
            loaded = load_champion(platform, serving or offline_settings(), batch.model_name, batch.model_version)
            src = open_source(local)
        except ScoringError as exc:
            _fail(engine, batch_id, str(exc))
        except LedgerlineError as exc:  # ArtifactStoreError: the input object is gone
            _fail(engine, batch_id, str(exc))
        assert loaded is not None
        if batch.rows_total is None or batch.input_format == "parquet":
            _update(engine, batch_id, rows_total=src.total_rows)
        total = src.total_rows
        done = committed_chunks(engine, batch_id)
        start = done[-1].chunk + 1 if done else 0
        if done:
            say(f"resuming after chunk {start - 1} ({sum(c.rows for c in done):,} rows committed by earlier attempts)")
        family = loaded.family
        score_column = getattr(family, "score_column", family.answer_columns[0])
        header_written = store.exists(errors_header_key(batch_id)) if batch.rows_failed else False
        t0 = time.perf_counter()
        rows_this_attempt = 0
        chunks = scored_chunks(loaded, src, batch.chunk_rows, start_chunk=start)

        job: Batch = batch  # what the writer thread reads of the job: its id and formats, fixed at submission

        def commit(chunk: ScoredChunk, entry: Any, ids: list[str], body: bytes | None, header: str | None) -> Batch:
            """Chunk ``chunk``'s objects, log rows and row in ``batch_chunks``, in that order (resumable)."""
            nonlocal header_written
            if body is not None:
                store.put_bytes(chunk_key(batch_id, chunk.index, job.output_format), body)
            if chunk.rejected_rows:
                if not header_written:
                    store.put_bytes(errors_header_key(batch_id),
                                    _errors_body([], [], chunk.rejected.iloc[:0], ["row", "error", *src.names]))
                    header_written = True
                store.put_bytes(errors_key(batch_id, chunk.index),
                                _errors_body(chunk.rejected_rows, chunk.reasons, chunk.rejected, None))
            if ids:
                write_predictions(engine, [entry])  # idempotent: the ids are the rows'
            return _commit_chunk(engine, job, chunk, attempt, header)

        # One chunk's writes (artifact store, prediction log, commit: mostly waiting on I/O) run in a thread while
        # the next chunk is read and scored; chunks still commit one at a time and in order, so a killed task
        # resumes after the last committed chunk exactly as before.
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: tuple[Future[Batch], ScoredChunk] | None = None

        def drain() -> str | None:
            """Wait for the chunk in flight to commit (its errors raise here), report progress, and end the job
            when it was cancelled or has too many bad rows; returns the job's end state, if it ended."""
            nonlocal pending, batch, rows_this_attempt
            if pending is None:
                return None
            future, sent = pending
            pending = None
            batch = future.result()
            rows_this_attempt += sent.rows
            rate = rows_this_attempt / max(time.perf_counter() - t0, 1e-9)
            say(f"chunk {sent.index} committed: {batch.rows_done:,} / {total:,} rows ({batch.rows_failed:,} rejected; "
                f"{rate:,.0f} rows/s)")
            if batch.cancel_requested:
                finish(engine, batch_id, "cancelled", "cancelled on request; the committed chunks stay downloadable")
                return "cancelled"
            if total and batch.rows_failed > batch.max_error_share * total:
                _fail(engine, batch_id, _too_many(batch, total))
            return None

        # leaving the block waits for the chunk in flight, whatever ended the loop
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-commit") as writer:
            while True:
                c0 = time.perf_counter()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except ScoringError as exc:
                    drain()  # what was scored before the bad chunk is committed first
                    _fail(engine, batch_id, str(exc))
                header = None
                body = None
                entry, ids = _log_entry(batch, chunk, score_column, time.perf_counter() - c0)
                if chunk.table is not None:
                    import pyarrow as pa

                    table = chunk.table.append_column(PREDICTION_ID, pa.array(ids, pa.string()))
                    if batch.output_format == "csv":
                        header = _csv_body(table.slice(0, 0), header=True).decode()
                        body = _csv_body(table, header=False)
                    else:
                        body = _parquet_body(table)
                ended = drain()  # the previous chunk is committed before this one is sent
                if ended is not None:
                    return ended
                pending = (writer.submit(commit, chunk, entry, ids, body, header), chunk)
            ended = drain()
            if ended is not None:
                return ended
        batch = get_batch(engine, batch_id) or batch
        if batch.rows_done == 0:
            _fail(engine, batch_id, "the input has no rows to score")
        if batch.rows_failed > batch.max_error_share * batch.rows_done:
            _fail(engine, batch_id, _too_many(batch, batch.rows_done))
        _update(engine, batch_id, rows_total=batch.rows_done)  # exact now (a CSV's count may be an estimate)
        finish(engine, batch_id, "succeeded")
        say(f"succeeded: {batch.rows_done:,} rows, {batch.rows_failed:,} rejected")
        return "succeeded"
    finally:
        if loaded is not None:
            loaded.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _too_many(batch: Batch, total: int) -> str:
    return (f"{batch.rows_failed:,} of {total:,} rows were rejected, more than the allowed "
            f"{batch.max_error_share:.1%}; the errors file has each row and its reason; committed results stay downloadable")


def _fail(engine: Engine, batch_id: str, message: str) -> None:
    finish(engine, batch_id, "failed", message)
    raise BatchError(message)


# --------------------------------------------------------------------------- reading results


def result_blocks(store: ArtifactStore, engine: Engine, batch: Batch) -> Iterator[bytes]:
    """The committed results as one file in the job's output format, streamed chunk by chunk."""
    chunks = [c for c in committed_chunks(engine, batch.batch_id) if c.scored]
    if batch.output_format == "csv":
        if batch.results_header:
            yield batch.results_header.encode()
        for c in chunks:
            yield from store.stream(chunk_key(batch.batch_id, c.chunk, "csv"))
        return
    yield from _parquet_stream(store, batch, chunks)


class _Sink:
    """A write-only file for pyarrow's ParquetWriter whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        b = bytes(data)
        self.parts.append(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _parquet_stream(store: ArtifactStore, batch: Batch, chunks: list[ChunkRow]) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    sink = _Sink()
    writer: Any = None
    schema = None
    for c in chunks:
        data = b"".join(store.stream(chunk_key(batch.batch_id, c.chunk, "parquet")))
        table = pq.read_table(io.BytesIO(data))
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(sink, schema)
        elif table.schema != schema:
            table = table.cast(schema)
        writer.write_table(table)
        yield sink.take()
    if writer is None:
        return
    writer.close()
    yield sink.take()


def error_blocks(store: ArtifactStore, engine: Engine, batch: Batch) -> Iterator[bytes]:
    chunks = [c for c in committed_chunks(engine, batch.batch_id) if c.failed]
    if not chunks:
        return
    yield from store.stream(errors_header_key(batch.batch_id))
    for c in chunks:
        yield from store.stream(errors_key(batch.batch_id, c.chunk))


def as_dict(batch: Batch) -> dict[str, Any]:
    return asdict(batch)


# --------------------------------------------------------------------------- the scheduled variant


def dated_batch_id(model_name: str, input_uri: str) -> str:
    """One job per model and input object: a re-run of the same logical date finds it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline-batch:{model_name}:{input_uri}"))


def _expand(store: ArtifactStore, template: str, ds: str) -> str:
    value = template.replace("{ds}", ds).replace("{ds_nodash}", ds.replace("-", ""))
    return value if "://" in value or value.startswith("/") else store.uri(value)


def score_dated(
    platform: Settings,
    model_name: str,
    input_template: str,
    output_template: str,
    ds: str,
    *,
    attempt: int = 1,
    chunk_rows: int = 50_000,
    max_error_share: float = 0.01,
) -> dict[str, Any]:
    """Score the daily drop ``input_template`` (``{ds}`` = the logical date, YYYY-MM-DD) into ``output_template``.

    Idempotent per logical date: the job's id derives from the model and the input object, so a
    re-run resumes (or finds finished) the same job and rewrites the same results object; the
    version is the champion when the date's job was first created. Returns the job's summary.
    """
    from ledgerline.artifact_store import artifact_store
    from serving import loader

    store = artifact_store(platform)
    input_uri, output_uri = _expand(store, input_template, ds), _expand(store, output_template, ds)
    in_fmt, out_fmt = format_of(input_uri), format_of(output_uri)
    in_key, out_key = store.key_of(input_uri), store.key_of(output_uri)
    if in_fmt is None or out_fmt is None:
        raise BatchError(f"the dated input and output must end in .csv or .parquet: {input_uri}, {output_uri}")
    if in_key is None or out_key is None:
        raise BatchError(f"the dated input and output must be inside the artifact store {store.root}")
    if not store.exists(in_key):
        raise BatchError(f"no input for {ds}: {input_uri} does not exist (has the day's file been dropped?)")
    engine = db.engine_for(platform.resolved_app_db_url())
    batch_id = dated_batch_id(model_name, input_uri)
    batch = get_batch(engine, batch_id)
    if batch is None:
        ref = loader.champion_ref(loader.mlflow_client(platform), model_name)
        if ref is None:
            raise BatchError(f"model {model_name} has no @champion to score the {ds} drop with")
        batch = create_batch(
            engine, batch_id=batch_id, model_name=model_name, model_version=ref.version, family=ref.family or "",
            owner=SCHEDULE_OWNER, input_uri=input_uri, input_format=in_fmt, output_format=out_fmt,
            results_uri=store.uri(prefix(batch_id) + "/results"), chunk_rows=chunk_rows,
            max_error_share=max_error_share, rows_total=None,
        )
    state = run_batch(platform, batch_id, attempt=attempt)
    batch = get_batch(engine, batch_id) or batch
    if state == "succeeded":
        store.put_stream(out_key, result_blocks(store, engine, batch))
        if batch.rows_failed:
            store.put_stream(out_key + ".errors.csv", error_blocks(store, engine, batch))
    return {"batch_id": batch_id, "state": state, "input": input_uri, "output": output_uri,
            "rows": batch.rows_done, "rejected": batch.rows_failed}
