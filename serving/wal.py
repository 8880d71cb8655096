"""The prediction log's write-ahead log: an answered prediction is on disk before its answer leaves.

Each worker process appends every accepted request's log rows, as one JSON line, to its own
segment file (``wal-<created ms>-<pid>-<n>x<token>.log`` in the spill folder, opened ``O_APPEND``)
and holds an exclusive ``flock`` on it while it lives. With ``fsync=True`` a background
thread makes the appended bytes durable with one ``fdatasync`` per group of requests (group
commit) and wakes the requests waiting for it; with ``fsync=False`` the bytes are in the
kernel's page cache as soon as ``append`` returns, which survives a crash of the process
(``kill -9``) but not of the machine.

The database writer tells the log how far it got (:meth:`release`); a segment is deleted once
it is closed (rotated) and all of its records are in the database. A segment whose owner died
is no longer locked: :func:`claim_orphans` (any worker, at start and now and then) takes its
lock and hands its records back to be written again; the inserts are idempotent on
``prediction_id``, so a replay after a crash between the database write and the deletion
stores nothing twice.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from serving.store import LogEntry

logger = logging.getLogger(__name__)

SEGMENT_GLOB = "wal-*.log"


def encode_entry(e: LogEntry) -> bytes:
    """One request's rows as one JSON line (inputs and outputs are already JSON: embedded as they are)."""
    return (
        '{"m":' + json.dumps(e.model_name)
        + ',"v":' + json.dumps(e.model_version)
        + ',"t":"' + e.created_at.isoformat()
        + '","l":' + repr(float(e.latency_ms))
        + ',"ids":' + json.dumps(list(e.ids))
        + ',"s":' + json.dumps([float(s) for s in e.scores])
        + ',"i":[' + ",".join(e.inputs)
        + '],"o":[' + ",".join(e.outputs)
        + "]}\n"
    ).encode()


def decode_entry(line: bytes) -> LogEntry:
    r = json.loads(line)
    return LogEntry(
        r["m"],
        r["v"],
        datetime.fromisoformat(r["t"]),
        r["ids"],
        [json.dumps(x, separators=(",", ":")) for x in r["i"]],
        [json.dumps(x, separators=(",", ":")) for x in r["o"]],
        r["s"],
        r["l"],
    )


def segment_created_ms(path: Path) -> int | None:
    """The creation time (Unix ms) a segment's name carries, or None for a foreign name."""
    parts = path.name.split("-")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1])


def oldest_segment_ms(directory: Path | None) -> int | None:
    """Creation time of the oldest segment of any worker in ``directory``: no record still waiting
    for the database (in any worker's log on this host) is much older than this."""
    if directory is None or not directory.is_dir():
        return None
    times = [t for p in directory.glob(SEGMENT_GLOB) if (t := segment_created_ms(p)) is not None]
    return min(times) if times else None


@dataclass
class _Segment:
    path: Path
    fd: int
    created: float  # monotonic
    size: int = 0
    last_seq: int = 0  # sequence number of the last record appended
    closed: bool = False


@dataclass
class ClaimedSegment:
    """A dead worker's segment, locked by this process until its records are in the database."""

    path: Path
    fd: int
    entries: list[LogEntry] = field(default_factory=list)
    torn: int = 0  # lines that could not be decoded (a write cut short by the crash: never answered)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the lock
            self.fd = -1


class WriteAheadLog:
    """This process's segments. ``append`` is called under the prediction log's lock, in order."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        segment_bytes: int = 32 * 1024 * 1024,
        segment_seconds: float = 10.0,
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self._lock = threading.Lock()  # segments and counters
        self._sync_lock = threading.Lock()  # held around fdatasync; closing an fd takes it too
        self._cond = threading.Condition(self._lock)
        self._segments: list[_Segment] = []  # oldest first; the last one is active unless closed
        self._counter = 0
        self._token = os.urandom(3).hex()  # two logs in one process (tests) never share a segment name
        self._seq = 0  # records appended
        self._synced = 0  # records durable
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sync_error: OSError | None = None
        self.fsyncs = 0

    # ------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.fsync:
            self._thread = threading.Thread(target=self._sync_loop, name="prediction-log-fsync", daemon=True)
            self._thread.start()

    def close(self, *, all_written: bool) -> None:
        """Stop; delete the segments when everything reached the database, else leave them for a replay."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        with self._sync_lock, self._lock:
            for seg in self._segments:
                if all_written:
                    seg.path.unlink(missing_ok=True)
                else:
                    self._sync_fd(seg.fd)
                os.close(seg.fd)
            self._segments.clear()
            self._wake(self._seq)

    # ------------------------------------------------------------- writing
    def append(self, data: bytes) -> int:
        """Write one record; returns its sequence number (pass it to :meth:`wait` / :meth:`durable`)."""
        with self._lock:
            seg = self._active()
            written = os.write(seg.fd, data)
            while written < len(data):  # a regular file only writes short on a full disk: keep going or raise
                written += os.write(seg.fd, data[written:])
            seg.size += len(data)
            self._seq += 1
            seg.last_seq = self._seq
            if self.fsync:
                self._cond.notify()
            else:
                self._synced = self._seq
            return self._seq

    def _active(self) -> _Segment:
        seg = self._segments[-1] if self._segments and not self._segments[-1].closed else None
        if seg is not None and (
            seg.size >= self.segment_bytes or time.monotonic() - seg.created >= self.segment_seconds
        ):
            self._close_segment(seg)
            seg = None
        if seg is None:
            seg = self._new_segment()
            self._segments.append(seg)
        return seg

    def _close_segment(self, seg: _Segment) -> None:
        """Rotate: later records go to a new segment. Its bytes are made durable first (fsync mode)."""
        if self.fsync:
            self._sync_fd(seg.fd)
            self._synced = max(self._synced, seg.last_seq)
        seg.closed = True

    def _new_segment(self) -> _Segment:
        """Created under a temporary name, locked, then renamed: no other worker ever sees it unlocked."""
        self._counter += 1
        name = f"wal-{time.time_ns() // 1_000_000}-{os.getpid()}-{self._counter}x{self._token}.log"
        tmp = self.directory / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.directory / name
        os.rename(tmp, path)
        if self.fsync:
            self._sync_dir()
        return _Segment(path, fd, time.monotonic())

    def _sync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _sync_fd(self, fd: int) -> None:
        os.fdatasync(fd)
        self.fsyncs += 1

    # --------------------------------------------------------- group commit
    def _sync_loop(self) -> None:
        while True:
            with self._cond:
                while self._synced >= self._seq and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                target = self._seq
                # none left: every record is in the database already (released), nothing to sync
                seg = self._segments[-1] if self._segments else None
            with self._sync_lock:
                try:
                    if seg is not None and seg.fd >= 0:
                        self._sync_fd(seg.fd)
                except OSError as exc:  # a disk that cannot sync: keep answering, say so loudly, once
                    if self.sync_error is None:
                        logger.exception("prediction log: fdatasync of %s failed", seg.path if seg else "?")
                    self.sync_error = exc
            with self._cond:
                self._synced = max(self._synced, target)
                self._wake(self._synced)

    def _wake(self, upto: int) -> None:
        """Under the lock: resolve the async waiters of records up to ``upto`` and wake blocked ones."""
        self._cond.notify_all()
        if not self._waiters:
            return
        ready: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        keep = []
        for seq, loop, fut in self._waiters:
            if seq <= upto:
                ready.setdefault(loop, []).append(fut)
            else:
                keep.append((seq, loop, fut))
        self._waiters = keep
        for loop, futs in ready.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def wait(self, seq: int, timeout: float = 30.0) -> bool:
        """Block until record ``seq`` is durable (from a worker thread)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._synced < seq and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def durable(self, seq: int) -> asyncio.Future[None] | None:
        """None when record ``seq`` is already durable, else a future of the running loop to await."""
        if self._synced >= seq:
            return None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._synced >= seq or self._stopping:
                return None
            self._waiters.append((seq, loop, fut))
        return fut

    # ------------------------------------------------------------ progress
    def release(self, written_seq: int, *, close_active: bool = False) -> None:
        """Records up to ``written_seq`` are in the database: delete the closed segments they fill
        (and the active one too with ``close_active``, when all of it is written)."""
        with self._lock:
            done = [
                s for s in self._segments
                if s.last_seq <= written_seq and (s.closed or (close_active and s.last_seq == self._seq))
            ]
            if not done:
                return
            for s in done:
                if not s.closed:  # the active segment is fully written: close it, the next record opens a new one
                    s.closed = True
                self._segments.remove(s)
        with self._sync_lock:
            for s in done:
                s.path.unlink(missing_ok=True)
                os.close(s.fd)
                s.fd = -1

    def idle_check(self, written_seq: int) -> None:
        """Housekeeping when nothing is waiting: drop an old, fully written active segment."""
        with self._lock:
            seg = self._segments[-1] if self._segments else None
            stale = seg is not None and time.monotonic() - seg.created >= self.segment_seconds
        if stale:
            self.release(written_seq, close_active=True)

    @property
    def segments(self) -> list[Path]:
        with self._lock:
            return [s.path for s in self._segments]


def _resolve(futs: list[asyncio.Future[None]]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


def claim_orphans(directory: Path | None) -> Iterator[ClaimedSegment]:
    """Segments in ``directory`` whose owner is gone, each locked by us and read back."""
    if directory is None or not directory.is_dir():
        return
    for path in sorted(directory.glob(SEGMENT_GLOB), key=lambda p: segment_created_ms(p) or 0):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its owner is alive (or another worker is replaying it)
            os.close(fd)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # replayed and deleted by another worker between our open and our lock
            os.close(fd)
            continue
        claimed = ClaimedSegment(path, fd)
        with os.fdopen(os.dup(fd), "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    claimed.entries.append(decode_entry(line))
                except (ValueError, KeyError):
                    claimed.torn += 1
        yield claimed
