"""The prediction-log writer on a real SQLite file: batching, flush on close, buffering while
the database is away, the bounded buffer, and the spill file at a shutdown without database."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.errors import LogBufferFull
from serving.predlog import PredictionLog
from serving.state import new_prediction_ids
from serving.store import LogEntry, make_engine


class Recorder:
    def __init__(self) -> None:
        self.writes: list[int] = []
        self.failures = 0
        self.refused: list[tuple[int, bool]] = []
        self.states: list[tuple[int, int, bool, bool]] = []

    def log_written(self, rows: int) -> None:
        self.writes.append(rows)

    def log_write_failed(self) -> None:
        self.failures += 1

    def log_refused(self, rows: int, dropped: bool) -> None:
        self.refused.append((rows, dropped))

    def log_state(self, pending_rows: int, capacity: int, full: bool, db_up: bool) -> None:
        self.states.append((pending_rows, capacity, full, db_up))


def entry(rows: int = 1) -> LogEntry:
    ids = new_prediction_ids(rows)
    records = [{"x": float(i), "c": "a"} for i in range(rows)]
    answers = [{"probability_of_default": 0.25, "decision": "approve"} for _ in range(rows)]
    return LogEntry.encode("m", "1", datetime.now(UTC), ids, records, answers, [0.25] * rows, 1.5)


def count(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one())
    finally:
        engine.dispose()


def test_every_submitted_row_is_written_in_batches_and_close_flushes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    rec = Recorder()
    log = PredictionLog(make_engine(url), batch_rows=50, flush_interval=0.05, observer=rec)
    log.start()
    for _ in range(200):
        log.submit(entry())
    log.submit(entry(120))
    assert log.close(timeout=10) == 0
    assert count(url) == 320
    assert sum(rec.writes) == 320
    assert len(rec.writes) < 320 / 5  # batched, not row by row


def test_flush_waits_until_the_rows_are_in_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    log = PredictionLog(make_engine(url), batch_rows=10_000, flush_interval=60)
    log.start()
    e = entry(3)
    log.submit(e)
    assert log.contains(e.ids[1])
    assert log.flush(timeout=10)
    assert count(url) == 3 and not log.contains(e.ids[1])
    log.close()


def test_rows_stay_buffered_while_the_database_is_away_and_are_written_when_it_returns(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    url = f"sqlite:///{db_dir / 'app.db'}"
    engine = make_engine(url)
    shutil.rmtree(db_dir)
    db_dir.write_text("not a folder: the database cannot be opened")  # the database is "away"
    rec = Recorder()
    log = PredictionLog(engine, batch_rows=10, flush_interval=0.02, retry_max=0.1, observer=rec)
    log.start()
    for _ in range(30):
        log.submit(entry())
    assert not log.flush(timeout=0.5)
    assert not log.db_available and log.pending_rows == 30 and rec.failures > 0
    assert log.status()["last_error"]
    db_dir.unlink()
    db_dir.mkdir()  # back
    assert log.flush(timeout=10)
    assert log.db_available and log.pending_rows == 0
    assert count(url) == 30
    log.close()


def test_a_full_buffer_rejects_new_predictions_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db_dir = tmp_path / "db"
    engine = make_engine(f"sqlite:///{db_dir / 'app.db'}")
    shutil.rmtree(db_dir)
    db_dir.write_text("away")
    rec = Recorder()
    log = PredictionLog(engine, buffer_rows=10, flush_interval=0.02, retry_max=0.1, observer=rec)
    log.start()
    log.submit(entry(8))
    with pytest.raises(LogBufferFull, match="8 of 10 rows"):
        log.submit(entry(5))
    assert log.full and rec.refused == [(5, False)]
    assert any(state[2] for state in rec.states)
    assert "prediction log buffer full" in caplog.text
    log.close(timeout=0.2)


def test_a_request_waits_for_room_while_the_writer_catches_up(tmp_path: Path) -> None:
    import time

    url = f"sqlite:///{tmp_path / 'app.db'}"
    log = PredictionLog(make_engine(url), buffer_rows=10, batch_rows=100, flush_interval=0.3)
    log.start()
    log.submit(entry(8))
    with pytest.raises(LogBufferFull, match="not keeping up"):
        log.submit(entry(5))  # no wait: refused at once
    t0 = time.monotonic()
    assert log.submit(entry(5), wait=10)  # the timed flush frees the buffer
    assert time.monotonic() - t0 < 5
    assert log.flush(timeout=10)
    assert count(url) == 13 and log.rejected_rows == 5
    log.close()


def test_no_waiting_for_room_while_the_database_is_away(tmp_path: Path) -> None:
    import time

    db_dir = tmp_path / "db"
    engine = make_engine(f"sqlite:///{db_dir / 'app.db'}")
    shutil.rmtree(db_dir)
    db_dir.write_text("away")
    log = PredictionLog(engine, buffer_rows=10, flush_interval=0.02, retry_max=0.1)
    log.start()
    log.submit(entry(8))
    t0 = time.monotonic()
    with pytest.raises(LogBufferFull, match="unavailable"):
        log.submit(entry(5), wait=30)
    assert time.monotonic() - t0 < 5 and log.rejected_rows == 5
    log.close(timeout=0.2)


def test_drop_mode_serves_and_counts_the_dropped_rows(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    engine = make_engine(f"sqlite:///{db_dir / 'app.db'}")
    shutil.rmtree(db_dir)
    db_dir.write_text("away")
    rec = Recorder()
    log = PredictionLog(engine, buffer_rows=4, overflow="drop", flush_interval=0.02, retry_max=0.1, observer=rec)
    log.start()
    assert log.submit(entry(4))
    assert log.submit(entry(2)) is False
    assert log.dropped_rows == 2 and rec.refused == [(2, True)]
    log.close(timeout=0.2)


def test_rows_left_at_shutdown_are_spilled_and_written_on_the_next_start(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    url = f"sqlite:///{db_dir / 'app.db'}"
    spill = tmp_path / "spill"
    engine = make_engine(url)
    shutil.rmtree(db_dir)
    db_dir.write_text("away")
    log = PredictionLog(engine, flush_interval=0.02, retry_max=0.05, spill_dir=spill)
    log.start()
    log.submit(entry(7))
    assert log.close(timeout=0.3) == 7
    assert len(list(spill.glob("unwritten-*.jsonl"))) == 1
    db_dir.unlink()
    db_dir.mkdir()
    again = PredictionLog(make_engine(url), flush_interval=0.02, spill_dir=spill)
    again.start()
    assert again.flush(timeout=10)
    assert count(url) == 7
    assert again.close() == 0
    assert not list(spill.iterdir())


def test_a_request_the_database_refuses_is_set_aside_and_does_not_block_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    spill = tmp_path / "spill"
    log = PredictionLog(make_engine(url), batch_rows=100, flush_interval=0.05, spill_dir=spill)
    log.start()
    good = [entry(3) for _ in range(4)]
    bad = LogEntry("m", "1", datetime.now(UTC), ["bad-1"], ["{}"], ["{}"], ["not a number"], 1.0)  # type: ignore[list-item]
    for e in (good[0], good[1], bad, good[2], good[3]):
        log.submit(e)
    assert log.flush(timeout=10)
    assert count(url) == 12
    assert log.status()["refused_by_database_rows"] == 1
    (refused,) = spill.glob("refused-*.jsonl")
    assert "bad-1" in refused.read_text()
    assert "refused by the database" in caplog.text
    log.close()
