"""Batch scoring jobs, the runner: one attempt at a job, chunk after chunk, resumable (see
:mod:`serving.batch_jobs`), and the scheduled variant (a dated drop scored into a dated object).

While one chunk's writes (artifact store, prediction log, commit: mostly waiting on I/O) run in
a writer thread, the next chunk is read and scored; chunks still commit one at a time and in
order, so a killed task resumes after the last committed chunk.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledgerline import db
from ledgerline.artifact_store import ArtifactStore
from ledgerline.errors import LedgerlineError
from serving.batch_jobs.results import error_blocks, result_blocks
from serving.batch_jobs.table import (
    PREDICTION_ID,
    SCHEDULE_OWNER,
    Batch,
    BatchError,
    batch_prediction_ids,
    chunk_key,
    commit_chunk,
    committed_chunks,
    create_batch,
    dated_batch_id,
    errors_header_key,
    errors_key,
    finish,
    format_of,
    get_batch,
    prefix,
    update_batch,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from ledgerline.settings import Settings
    from serving.batch import LoadedChampion, ScoredChunk, Source
    from serving.settings import ServingSettings
    from serving.store import LogEntry

logger = logging.getLogger(__name__)


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


def _log_entry(batch: Batch, chunk: ScoredChunk, score_column: str | None, seconds: float) -> tuple[LogEntry, list[str]]:
    from serving.jsontext import json_rows
    from serving.store import LogEntry

    clean, answers = chunk.clean, chunk.answers
    created_ms = int(batch.created_at.timestamp() * 1000)
    ids = batch_prediction_ids(batch.batch_id, created_ms, (int(i) + 1 for i in clean.index))
    if score_column is None:  # a family without a score: the log keeps none
        scores = [math.nan] * len(ids)
    else:
        scores = answers[score_column].astype(float).tolist() if len(answers) else []
    return LogEntry(
        batch.model_name, batch.model_version, datetime.now(UTC), ids,
        json_rows(clean), json_rows(answers), scores,
        round(seconds * 1000.0 / max(1, len(ids)), 3), batch_id=batch.batch_id,
    ), ids


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
    from serving.batch import load_champion, offline_settings, open_source

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
    _mark_running(engine, batch_id)
    store = artifact_store(platform)
    key = store.key_of(batch.input_uri)
    if key is None:
        _fail(engine, batch_id, f"the input {batch.input_uri} is not in the artifact store {store.root}")
    say = progress or (lambda msg: logger.info("batch %s: %s", batch_id, msg))
    workdir = Path(tempfile.mkdtemp(prefix="ledgerline-batch-"))
    loaded: LoadedChampion | None = None
    try:
        try:
            local = _local_input(store, key, workdir / f"input.{batch.input_format}")
            loaded = load_champion(platform, serving or offline_settings(), batch.model_name, batch.model_version)
            src = open_source(local)
        except LedgerlineError as exc:  # ScoringError; ArtifactStoreError: the input object is gone
            _fail(engine, batch_id, str(exc))
        if not loaded.family.scores_rows:  # e.g. a scheduled drop for a model that answers otherwise
            _fail(engine, batch_id, f"model {batch.model_name} does not score files of rows; "
                                    f"{loaded.family.instead_of_rows(batch.model_name)}")
        return BatchRun(engine, store, batch, loaded, src, attempt, say).run()
    finally:
        if loaded is not None:
            loaded.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _mark_running(engine: Engine, batch_id: str) -> None:
    t = db.batches
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(t.update().where(t.c.batch_id == batch_id, t.c.state.in_(("queued", "running"))).values(
            state="running", attempts=t.c.attempts + 1, worker=f"{socket.gethostname()}:{os.getpid()}",
            started_at=sa.func.coalesce(t.c.started_at, now), updated_at=now,
        ))


def _local_input(store: ArtifactStore, key: str, path: Path) -> Path:
    """The input object as a local file named ``path`` (its suffix picks the reader)."""
    local = store.local_path(key)
    if local is None or not local.is_file():
        return store.download(key, path)
    path.symlink_to(local.resolve())  # keep the job's suffix: open_source picks the reader by it
    return path


class BatchRun:
    """One attempt at a job: chunk after chunk scored, each committed by a writer thread while the next is scored.

    ``job`` is the job as submitted (id, formats: what the writer thread reads); ``batch`` is the
    job as the last commit left it (counts, cancel request: what :meth:`drain` checks).
    """

    def __init__(self, engine: Engine, store: ArtifactStore, batch: Batch, loaded: LoadedChampion, src: Source,
                 attempt: int, say: Callable[[str], None]) -> None:
        self.engine, self.store, self.loaded, self.src, self.attempt, self.say = engine, store, loaded, src, attempt, say
        self.job = batch
        self.batch = batch
        self.total = src.total_rows
        self.header_written = store.exists(errors_header_key(batch.batch_id)) if batch.rows_failed else False
        self.rows_this_attempt = 0
        self.t0 = time.perf_counter()
        self.pending: tuple[Future[Batch], ScoredChunk] | None = None

    @property
    def batch_id(self) -> str:
        return self.job.batch_id

    def run(self) -> str:
        """Score from the chunk after the last committed one; returns the job's final state."""
        from serving.batch import ScoringError, scored_chunks

        engine, batch_id, batch = self.engine, self.batch_id, self.batch
        if batch.rows_total is None or batch.input_format == "parquet":
            update_batch(engine, batch_id, rows_total=self.total)
        done = committed_chunks(engine, batch_id)
        start = done[-1].chunk + 1 if done else 0
        if done:
            self.say(f"resuming after chunk {start - 1} ({sum(c.rows for c in done):,} rows committed by earlier attempts)")
        score_column = self.loaded.family.score_column
        chunks: Iterator[ScoredChunk] = scored_chunks(self.loaded, self.src, batch.chunk_rows, start_chunk=start)
        # leaving the block waits for the chunk in flight, whatever ended the loop
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-commit") as writer:
            while True:
                c0 = time.perf_counter()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except ScoringError as exc:
                    self.drain()  # what was scored before the bad chunk is committed first
                    _fail(engine, batch_id, str(exc))
                entry, ids = _log_entry(self.job, chunk, score_column, time.perf_counter() - c0)
                body, header = self._results_body(chunk, ids)
                ended = self.drain()  # the previous chunk is committed before this one is sent
                if ended is not None:
                    return ended
                self.pending = (writer.submit(self.commit, chunk, entry, ids, body, header), chunk)
            ended = self.drain()
            if ended is not None:
                return ended
        return self.finish()

    def _results_body(self, chunk: ScoredChunk, ids: list[str]) -> tuple[bytes | None, str | None]:
        """The chunk's scored rows with their prediction ids, in the job's output format (and a CSV's header)."""
        if chunk.table is None:
            return None, None
        import pyarrow as pa

        table = chunk.table.append_column(PREDICTION_ID, pa.array(ids, pa.string()))
        if self.job.output_format == "csv":
            return _csv_body(table, header=False), _csv_body(table.slice(0, 0), header=True).decode()
        return _parquet_body(table), None

    def commit(self, chunk: ScoredChunk, entry: LogEntry, ids: list[str], body: bytes | None, header: str | None) -> Batch:
        """Chunk ``chunk``'s objects, log rows and row in ``batch_chunks``, in that order (resumable); in the writer thread."""
        from serving.store import write_predictions

        store, batch_id = self.store, self.batch_id
        if body is not None:
            store.put_bytes(chunk_key(batch_id, chunk.index, self.job.output_format), body)
        if chunk.rejected_rows:
            if not self.header_written:
                store.put_bytes(errors_header_key(batch_id),
                                _errors_body([], [], chunk.rejected.iloc[:0], ["row", "error", *self.src.names]))
                self.header_written = True
            store.put_bytes(errors_key(batch_id, chunk.index),
                            _errors_body(chunk.rejected_rows, chunk.reasons, chunk.rejected, None))
        if ids:
            write_predictions(self.engine, [entry])  # idempotent: the ids are the rows'
        return commit_chunk(self.engine, self.job, chunk, self.attempt, header)

    def drain(self) -> str | None:
        """Wait for the chunk in flight to commit (its errors raise here), report progress, and end the job
        when it was cancelled or has too many bad rows; returns the job's end state, if it ended."""
        if self.pending is None:
            return None
        future, sent = self.pending
        self.pending = None
        batch = self.batch = future.result()
        self.rows_this_attempt += sent.rows
        rate = self.rows_this_attempt / max(time.perf_counter() - self.t0, 1e-9)
        self.say(f"chunk {sent.index} committed: {batch.rows_done:,} / {self.total:,} rows "
                 f"({batch.rows_failed:,} rejected; {rate:,.0f} rows/s)")
        if batch.cancel_requested:
            finish(self.engine, self.batch_id, "cancelled", "cancelled on request; the committed chunks stay downloadable")
            return "cancelled"
        if self.total and batch.rows_failed > batch.max_error_share * self.total:
            _fail(self.engine, self.batch_id, _too_many(batch, self.total))
        return None

    def finish(self) -> str:
        """Every chunk committed: the job succeeds unless it had no rows or too many bad ones."""
        engine, batch_id = self.engine, self.batch_id
        batch = get_batch(engine, batch_id) or self.batch
        if batch.rows_done == 0:
            _fail(engine, batch_id, "the input has no rows to score")
        if batch.rows_failed > batch.max_error_share * batch.rows_done:
            _fail(engine, batch_id, _too_many(batch, batch.rows_done))
        update_batch(engine, batch_id, rows_total=batch.rows_done)  # exact now (a CSV's count may be an estimate)
        finish(engine, batch_id, "succeeded")
        self.say(f"succeeded: {batch.rows_done:,} rows, {batch.rows_failed:,} rejected")
        return "succeeded"


def _too_many(batch: Batch, total: int) -> str:
    return (f"{batch.rows_failed:,} of {total:,} rows were rejected, more than the allowed "
            f"{batch.max_error_share:.1%}; the errors file has each row and its reason; committed results stay downloadable")


def _fail(engine: Engine, batch_id: str, message: str) -> NoReturn:
    finish(engine, batch_id, "failed", message)
    raise BatchError(message)


# --------------------------------------------------------------------------- the scheduled variant


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
