"""The prediction log writer: a bounded in-memory buffer drained by one background thread.

Requests only append an entry (one per request, O(1)); the thread writes up to
``batch_rows`` rows per transaction whenever that many are waiting or the oldest entry
has waited ``flush_interval`` seconds. Entries leave the buffer only after their
transaction committed, so while the database is away they stay, and are written, in
order, when it returns (the insert is idempotent, so a retried batch is never doubled).

The buffer holds at most ``buffer_rows`` rows. When a request would overflow it, the
writer either refuses it (``overflow="reject"``: the API answers 503 and nothing that was
answered is ever missing from the log) or lets it through and counts the dropped rows
(``overflow="drop"``). Either way ``/metrics`` shows the buffer as full and the log says so.
A large request may first wait a little for room (``submit(entry, wait=...)``) while the
database is up and the writer is merely behind: backpressure as latency rather than 503s.

With ``wal="write"`` (the service's default) or ``"fsync"``, every accepted request is also
appended to this process's write-ahead log (:mod:`serving.wal`) before its answer leaves:
``record()`` returns the record's sequence number and the request waits for :meth:`durable`
(group-commit ``fdatasync``; nothing to wait for with ``"write"``). A crashed worker's log is
replayed by the next worker that starts (or looks: every ``orphan_scan_seconds``), so a
``kill -9`` loses no answered prediction, even with the database away.

``close()`` drains the buffer; what cannot be written before the timeout stays in the
write-ahead log, or without one is spilled to a JSON-lines file under ``spill_dir`` (read
back on the next start) instead of being lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import Engine

from serving.errors import LogBufferFull
from serving.log_observer import LogObserver, NullObserver, RateLimited, SafeObserver
from serving.log_recovery import claim_spills, dead_letter, spill
from serving.store import (
    LogEntry,
    MovedFeedback,
    TableGuard,
    is_unavailable,
    reconcile_pending_feedback,
    write_predictions,
)
from serving.wal import ClaimedSegment, WriteAheadLog, claim_orphans, encode_entry

logger = logging.getLogger(__name__)


class PredictionLog:
    def __init__(
        self,
        engine: Engine,
        *,
        batch_rows: int = 2000,
        flush_interval: float = 0.25,
        buffer_rows: int = 200_000,
        overflow: Literal["reject", "drop"] = "reject",
        retry_max: float = 5.0,
        spill_dir: Path | None = None,
        observer: LogObserver | None = None,
        wal: Literal["fsync", "write", "off"] = "off",
        orphan_scan_seconds: float = 10.0,
        on_feedback_moved: Callable[[list[MovedFeedback]], None] | None = None,
    ) -> None:
        self.engine = engine
        # feedback that waited for its prediction's row (pending) reaches the served model here, as the
        # feedback route's own labels do (a categorisation correction becomes a rule)
        self.on_feedback_moved = on_feedback_moved
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.capacity = buffer_rows
        self.overflow = overflow
        self.retry_max = retry_max
        self.spill_dir = spill_dir
        self.observer: LogObserver = SafeObserver(observer or NullObserver())
        self.tables = TableGuard(engine)
        # (entry, queued at, where it is durable: its WAL sequence number > 0, _ORPHAN, or _MEMORY)
        self._queue: deque[tuple[LogEntry, float, int]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._submitted = 0  # entries ever accepted
        self._written = 0  # entries ever written (or spilled)
        self._closing = False
        self._deadline: float | None = None
        self._flush_now = False
        self._retry_now = threading.Event()
        self._thread: threading.Thread | None = None
        self._full = False
        self._db_up = True
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._loaded_spills: list[tuple[Path, int]] = []
        self._claimed: list[tuple[ClaimedSegment, int]] = []
        if wal != "off" and spill_dir is None:
            raise ValueError("a write-ahead log needs a spill_dir to live in")
        self.wal: WriteAheadLog | None = (
            WriteAheadLog(spill_dir, fsync=wal == "fsync") if wal != "off" and spill_dir is not None else None
        )
        self.orphan_scan_seconds = orphan_scan_seconds
        self._next_scan = 0.0
        self._wal_written = 0  # highest WAL sequence number whose record is in the database
        self.replayed_rows = 0
        self._full_log = RateLimited()
        self._down_log = RateLimited(30.0)
        self.dropped_rows = 0
        self.rejected_rows = 0
        self.rejected_by_db_rows = 0
        self.written_rows = 0

    # ------------------------------------------------------------------ state
    @property
    def pending_rows(self) -> int:
        return self._pending

    @property
    def full(self) -> bool:
        return self._full

    @property
    def db_available(self) -> bool:
        return self._db_up

    def status(self) -> dict[str, Any]:
        return {
            "database_available": self._db_up,
            "pending_rows": self._pending,
            "buffer_rows": self.capacity,
            "buffer_full": self._full,
            "overflow": self.overflow,
            "written_rows": self.written_rows,
            "dropped_rows": self.dropped_rows,
            "rejected_rows": self.rejected_rows,
            "refused_by_database_rows": self.rejected_by_db_rows,
            "last_error": self._last_error,
            "write_ahead_log": "off" if self.wal is None else ("fsync" if self.wal.fsync else "write"),
            "replayed_rows": self.replayed_rows,
        }

    def contains(self, prediction_id: str) -> bool:
        """Whether a prediction is still waiting in this process's buffer (rare path: a scan)."""
        with self._cond:
            entries = [item[0] for item in self._queue]
        return any(prediction_id in e.ids for e in entries)

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._reload_spills()
        if self.wal is not None:
            self._claim_orphans()
            self.wal.open()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def submit(self, entry: LogEntry, wait: float = 0.0) -> bool:
        """Queue one request's records. False when dropped (overflow="drop"); raises LogBufferFull ("reject").

        With a write-ahead log, use :meth:`record` and wait for :meth:`durable` before answering.
        """
        return self.record(entry, wait) >= 0

    def record(self, entry: LogEntry, wait: float = 0.0) -> int:
        """:meth:`submit`, returning the record's WAL sequence number (0 without a WAL, -1 when dropped).

        ``wait`` > 0: when the buffer is full only because the writer is behind (the database is up and
        being written to), block up to ``wait`` seconds for room before refusing: backpressure as latency
        instead of 503s under a burst. Never while the database is away (the buffer then only drains
        when it returns), and only from a worker thread (it blocks).
        """
        n = entry.rows
        data = encode_entry(entry) if self.wal is not None else b""
        with self._cond:
            if self._pending + n > self.capacity and wait > 0 and n <= self.capacity:
                deadline = time.monotonic() + wait
                while self._pending + n > self.capacity and self._db_up and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)  # _succeeded() notifies when rows leave the buffer
            if self._pending + n > self.capacity:
                self._refuse(n)
                if self.overflow == "reject":
                    why = "the app database is unavailable" if not self._db_up else "the app database is not keeping up"
                    raise LogBufferFull(
                        f"the prediction log buffer is full ({self._pending} of {self.capacity} rows waiting: "
                        f"{why}); retry shortly"
                    )
                return -1
            seq = self.wal.append(data) if self.wal is not None else _MEMORY
            was_empty = not self._queue
            self._queue.append((entry, time.monotonic(), seq))
            self._pending += n
            self._submitted += 1
            if was_empty or self._pending >= self.batch_rows:
                self._cond.notify_all()  # all: a submitter waiting for room must not take the writer's wake-up
        return seq

    def durable(self, seq: int) -> asyncio.Future[None] | None:
        """Awaitable (in the event loop) until record ``seq`` is on disk; None when it already is."""
        if self.wal is None or seq <= 0:
            return None
        return self.wal.durable(seq)

    def wait_durable(self, seq: int, timeout: float = 30.0) -> bool:
        """Block (in a worker thread) until record ``seq`` is on disk."""
        if self.wal is None or seq <= 0:
            return True
        return self.wal.wait(seq, timeout)

    def _refuse(self, n: int) -> None:
        if self.overflow == "reject":
            self.rejected_rows += n
        else:
            self.dropped_rows += n
        if not self._full:
            self._full = True
            self.observer.log_state(self._pending, self.capacity, True, self._db_up)
        self.observer.log_refused(n, self.overflow == "drop")
        suppressed = self._full_log.due()
        if suppressed is not None:
            logger.error(
                "prediction log buffer full (%d rows waiting, capacity %d, database %s): %s %d rows%s",
                self._pending,
                self.capacity,
                "up" if self._db_up else "unreachable",
                "rejecting requests of" if self.overflow == "reject" else "DROPPING log records of",
                n,
                f" (+{suppressed} similar events)" if suppressed else "",
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._flush_now = True
            self._cond.notify_all()
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> int:
        """Stop accepting, write what is buffered; returns rows left unwritten (spilled if possible)."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._retry_now.set()
        if self._thread is not None:
            self._thread.join(timeout + 10)
        left = self._pending
        if self.wal is not None:
            self.wal.close(all_written=left == 0)  # what is left stays in the WAL for the next start
            for claimed, _ in self._claimed:
                claimed.release()  # not deleted: another worker (or the next start) replays it
            self._claimed.clear()
        if left:
            self._spill()
        return left

    # ------------------------------------------------------------------ writer
    def _take(self) -> list[LogEntry] | None:
        """Under the lock: the next batch to write, [] for housekeeping when idle, or None to stop."""
        while not self._queue:
            if self._closing:
                return None
            if not self._cond.wait(self.orphan_scan_seconds):
                return []
        first_at = self._queue[0][1]
        while self._pending < self.batch_rows and not self._closing and not self._flush_now:
            remaining = first_at + self.flush_interval - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        self._flush_now = False
        batch: list[LogEntry] = []
        rows = 0
        for entry, _, _ in self._queue:
            if batch and rows + entry.rows > self.batch_rows:
                break
            batch.append(entry)
            rows += entry.rows
        return batch

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._cond:
                batch = self._take()
            if batch is None:
                return
            self._housekeeping()
            if not batch:
                continue
            rows = sum(e.rows for e in batch)
            try:
                self.tables.ensure()
                write_predictions(self.engine, batch)
            except Exception as exc:
                if not is_unavailable(exc) and self._isolate(batch, exc):
                    backoff = 0.1
                    continue
                self._failed(exc, rows)
                if self._closing and self._deadline is not None:
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    time.sleep(min(backoff, remaining))
                else:
                    self._retry_now.wait(backoff)  # not woken by submissions: no retry storm
                    self._retry_now.clear()
                backoff = min(backoff * 2, self.retry_max)
                continue
            backoff = 0.1
            self._succeeded(batch, rows)

    def _failed(self, exc: Exception, rows: int) -> None:
        self._last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        self.observer.log_write_failed()
        if self._db_up:
            self._db_up = False
            self._failing_since = time.monotonic()
            with self._cond:  # submitters waiting for room stop waiting: the buffer drains only when it is back
                self._cond.notify_all()
            logger.warning(
                "prediction log: cannot write %d rows (%s); keeping them buffered (%d rows waiting) and retrying",
                rows,
                self._last_error,
                self._pending,
            )
        else:
            suppressed = self._down_log.due()
            if suppressed is not None:
                logger.warning(
                    "prediction log: database still unavailable (%s); %d rows buffered of %d",
                    self._last_error,
                    self._pending,
                    self.capacity,
                )
        self.observer.log_state(self._pending, self.capacity, self._full, False)

    def _succeeded(self, batch: list[LogEntry], rows: int) -> None:
        """``batch`` (the oldest entries) is done; ``rows`` of its rows reached the database."""
        with self._cond:
            for _ in batch:
                _, _, seq = self._queue.popleft()
                if seq > self._wal_written:
                    self._wal_written = seq
            self._pending -= sum(e.rows for e in batch)
            self._written += len(batch)
            self.written_rows += rows
            if self._full and self._pending < self.capacity:
                self._full = False
            self._cond.notify_all()
        if not self._db_up:
            down_for = time.monotonic() - (self._failing_since or time.monotonic())
            logger.warning("prediction log: database back after %.1fs; writing the buffered rows", down_for)
            self._db_up = True
            self._last_error = None
        self.observer.log_written(rows)
        self.observer.log_state(self._pending, self.capacity, self._full, True)
        self._forget_written_spills()
        if self.wal is not None:
            self.wal.release(self._wal_written)
        if rows:
            self._reconcile()

    def _reconcile(self) -> None:
        """Feedback that arrived before its prediction row: now that rows were written, attach it."""
        try:
            moved = reconcile_pending_feedback(self.engine)
        except Exception as exc:  # the next write tries again
            logger.warning("prediction log: could not reconcile pending feedback (%s)", exc)
            return
        if moved:
            logger.info("prediction log: %d pending feedback labels attached to their predictions", len(moved))
            if self.on_feedback_moved is not None:
                try:
                    self.on_feedback_moved(moved)
                except Exception:
                    logger.exception("prediction log: acting on %d pending feedback labels failed", len(moved))

    def _housekeeping(self) -> None:
        """Now and then: replay the log of a worker that died; drop this worker's idle, written segment."""
        if self.wal is None or time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + self.orphan_scan_seconds
        try:
            self._claim_orphans()
            with self._cond:
                idle = not self._queue
            if idle:
                self.wal.idle_check(self._wal_written)
        except OSError:
            logger.exception("prediction log: write-ahead log housekeeping failed")

    def _claim_orphans(self) -> None:
        """Queue the records of every segment whose owner process is gone (locked by us until written)."""
        if self.wal is None:
            return
        for claimed in claim_orphans(self.wal.directory):
            rows = sum(e.rows for e in claimed.entries)
            with self._cond:
                for e in claimed.entries:
                    self._queue.append((e, time.monotonic(), _ORPHAN))
                    self._pending += e.rows
                    self._submitted += 1
                self._claimed.append((claimed, self._submitted))
                self._cond.notify_all()
            self.replayed_rows += rows
            logger.warning(
                "prediction log: replaying %d rows from %s, the write-ahead log of a worker that stopped "
                "without writing them%s", rows, claimed.path.name,
                f" ({claimed.torn} incomplete records, never answered, skipped)" if claimed.torn else "",
            )

    def _isolate(self, batch: list[LogEntry], exc: Exception) -> bool:
        """A batch the database refuses for its content: write its entries one by one and set aside
        (log, count, dead-letter file) the ones that still fail, so one bad row cannot block the log.

        Returns False when the database turned out to be unreachable meanwhile (retry the batch later).
        """
        logger.error("prediction log: the database refused a batch (%s); writing its requests one by one", exc)
        done: list[LogEntry] = []
        written = 0
        for entry in batch:
            try:
                write_predictions(self.engine, [entry])
                written += entry.rows
            except Exception as one:
                if is_unavailable(one):
                    if done:
                        self._succeeded(done, written)
                    return False
                self.rejected_by_db_rows += entry.rows
                logger.error(
                    "prediction log: %d rows of %s v%s refused by the database (%s); kept in %s",
                    entry.rows, entry.model_name, entry.model_version, str(one).splitlines()[0][:200],
                    self._dead_letter([entry]),
                )
            done.append(entry)
        self._succeeded(done, written)
        return True

    # ------------------------------------------------------------------- spill
    def _dead_letter(self, entries: list[LogEntry]) -> Path | None:
        return dead_letter(self.spill_dir, entries)

    def _spill(self) -> None:
        """At shutdown: the rows held only in memory go to a spill file (WAL records stay in their segments)."""
        with self._cond:
            entries = [e for e, _, where in self._queue if where == _MEMORY]
            self._queue.clear()
            self._pending = 0
        spill(self.spill_dir, entries)

    def _reload_spills(self) -> None:
        """Re-queue the rows an earlier shutdown spilled (each file claimed by one worker; deleted once written)."""
        for claimed, entries in claim_spills(self.spill_dir):
            with self._cond:
                for e in entries:
                    self._queue.append((e, time.monotonic(), _MEMORY))
                    self._pending += e.rows
                    self._submitted += 1
                self._loaded_spills.append((claimed, self._submitted))

    def _forget_written_spills(self) -> None:
        if self._claimed:
            keep_claimed = []
            for claimed, seq in self._claimed:
                if self._written >= seq:
                    claimed.delete()
                else:
                    keep_claimed.append((claimed, seq))
            self._claimed = keep_claimed
        if not self._loaded_spills:
            return
        keep = []
        for path, seq in self._loaded_spills:
            if self._written >= seq:
                path.unlink(missing_ok=True)
            else:
                keep.append((path, seq))
        self._loaded_spills = keep


#: Where a queued entry is durable besides memory (a positive value is its sequence number in this worker's WAL).
_MEMORY = 0
_ORPHAN = -2
