"""The prediction log's write-ahead log on real files and a real SQLite database: records are on
disk before ``record`` returns (or after the group commit), a dead worker's log is replayed
exactly once, a live worker's log never, and written segments go away."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.predlog import PredictionLog
from serving.state import could_be_pending, new_prediction_ids, prediction_id_ms
from serving.store import LogEntry, make_engine
from serving.wal import WriteAheadLog, claim_orphans, decode_entry, encode_entry


def entry(rows: int = 1) -> LogEntry:
    ids = new_prediction_ids(rows)
    records = [{"x": float(i), "c": "a \\ \"q\" é"} for i in range(rows)]
    answers = [{"probability_of_default": 0.25, "decision": "approve"} for _ in range(rows)]
    return LogEntry.encode("m", "1", datetime.now(UTC), ids, records, answers, [0.25] * rows, 1.5)


def ids_in(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT prediction_id FROM predictions"))]
    finally:
        engine.dispose()


def unreachable_engine(tmp_path: Path) -> sa.Engine:
    """An SQLite engine whose folder is a file: every write fails as 'database unavailable'."""
    db_dir = tmp_path / "away"
    engine = make_engine(f"sqlite:///{db_dir / 'app.db'}")
    shutil.rmtree(db_dir)
    db_dir.write_text("not a folder")
    return engine


def crash(log: PredictionLog) -> None:
    """What ``kill -9`` leaves: the segment files with their bytes, no lock, no flush, no cleanup."""
    assert log.wal is not None
    for seg in log.wal._segments:
        os.close(seg.fd)  # the kernel drops the flock when the process dies
        seg.fd = -1
    log.wal._segments.clear()


def test_an_entry_survives_the_log_format_round_trip() -> None:
    e = entry(3)
    back = decode_entry(encode_entry(e))
    assert back.ids == list(e.ids) and back.scores == list(e.scores)
    assert [json.loads(x) for x in back.inputs] == [json.loads(x) for x in e.inputs]
    assert (back.model_name, back.model_version, back.created_at, back.latency_ms) == (
        e.model_name, e.model_version, e.created_at, e.latency_ms,
    )


@pytest.mark.parametrize("mode", ["fsync", "write"])
def test_a_crashed_worker_s_rows_are_replayed_by_the_next_one_exactly_once(tmp_path: Path, mode: str) -> None:
    spill = tmp_path / "spill"
    dead = PredictionLog(unreachable_engine(tmp_path), flush_interval=0.02, retry_max=0.05, spill_dir=spill, wal=mode)  # type: ignore[arg-type]
    dead.start()
    answered: list[str] = []
    for n in (1, 4, 2):
        e = entry(n)
        assert dead.wait_durable(dead.record(e), timeout=10)
        answered.extend(e.ids)
    crash(dead)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    # two workers start: only one of them replays the segment
    first = PredictionLog(make_engine(url), flush_interval=0.02, spill_dir=spill, wal=mode)  # type: ignore[arg-type]
    second = PredictionLog(make_engine(url), flush_interval=0.02, spill_dir=spill, wal=mode)  # type: ignore[arg-type]
    first.start()
    second.start()
    assert first.flush(timeout=10) and second.flush(timeout=10)
    assert sorted(ids_in(url)) == sorted(answered)
    assert first.replayed_rows + second.replayed_rows == 7
    assert first.close() == 0 and second.close() == 0
    assert not list(spill.glob("wal-*.log"))


def test_a_live_worker_s_log_is_never_replayed_by_another(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    live = PredictionLog(unreachable_engine(tmp_path), flush_interval=0.02, retry_max=0.05, spill_dir=spill, wal="write")
    live.start()
    live.record(entry(3))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    other = PredictionLog(make_engine(url), flush_interval=0.02, spill_dir=spill, wal="write")
    other.start()
    assert other.replayed_rows == 0
    assert len(list(spill.glob("wal-*.log"))) == 1
    assert live.close(timeout=0.3) == 3  # a clean stop with the database away: the rows stay in the log
    assert list(spill.glob("wal-*.log")) and not list(spill.glob("unwritten-*.jsonl"))
    other._housekeeping()  # the owner is gone now: the next scan replays it
    assert other.flush(timeout=10)
    assert len(ids_in(url)) == 3
    assert other.close() == 0
    assert not list(spill.glob("wal-*.log"))


def test_written_segments_are_deleted_as_the_database_catches_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    spill = tmp_path / "spill"
    log = PredictionLog(make_engine(url), flush_interval=0.02, spill_dir=spill, wal="fsync")
    assert log.wal is not None
    log.wal.segment_seconds = 0.05
    log.start()
    for _ in range(5):
        assert log.wait_durable(log.record(entry(2)))
        assert log.flush(timeout=10)
        time.sleep(0.06)
    assert len(list(spill.glob("wal-*.log"))) <= 1  # only the active one is left
    assert len(ids_in(url)) == 10
    log.close()
    assert not list(spill.glob("wal-*.log"))


def test_group_commit_resolves_the_awaiting_requests_after_one_fsync(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, fsync=True)
    wal.open()

    async def many() -> None:
        seqs = [wal.append(b'{"x":1}\n') for _ in range(50)]
        futures = [f for f in (wal.durable(s) for s in seqs) if f is not None]
        await asyncio.wait_for(asyncio.gather(*futures), 10)

    asyncio.run(many())
    assert 1 <= wal.fsyncs < 50
    wal.close(all_written=False)
    (seg,) = tmp_path.glob("wal-*.log")
    assert seg.read_bytes().count(b"\n") == 50
    (claimed,) = claim_orphans(tmp_path)
    assert claimed.torn == 50  # not log entries: counted as unreadable, not fatal
    claimed.delete()


def test_only_recent_uuidv7_ids_of_ours_may_be_pending() -> None:
    (pid,) = new_prediction_ids(1)
    now = prediction_id_ms(pid)
    assert now is not None
    assert could_be_pending(pid, window_seconds=60, oldest_log_ms=None, now_ms=now + 1_000)
    assert not could_be_pending(pid, window_seconds=60, oldest_log_ms=None, now_ms=now + 120_000)
    # older than the window, but a worker's log still holds rows from before it was made
    assert could_be_pending(pid, window_seconds=60, oldest_log_ms=now - 5_000, now_ms=now + 3_600_000)
    assert not could_be_pending(pid, window_seconds=60, oldest_log_ms=None, now_ms=now - 3_600_000)  # from the future
    assert not could_be_pending("0b6f1c3e-8d1a-4a57-9a8e-2f1d7c9b1e42", window_seconds=1e9, oldest_log_ms=None)  # v4
    assert not could_be_pending("not-an-id", window_seconds=1e9, oldest_log_ms=None)
