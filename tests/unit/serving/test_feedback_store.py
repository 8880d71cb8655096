"""The feedback store on SQLite (the demo's app database): repeated feedback answers like the first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledgerline import db
from serving.errors import FeedbackConflict
from serving.store import record_feedback

WHEN = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def _engine_with_prediction(tmp_path: Path) -> sa.Engine:
    engine = db.engine_for(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(sa.insert(db.predictions), [{"prediction_id": "p1", "model_name": "m", "model_version": "1",
                                                   "created_at": WHEN, "inputs": {}, "outputs": {}, "score": 0.3}])
    return engine


def test_a_repeated_feedback_reports_its_first_received_at_in_utc(tmp_path: Path) -> None:
    engine = _engine_with_prediction(tmp_path)
    first = record_feedback(engine, "p1", "1", now=WHEN)
    again = record_feedback(engine, "p1", "1", now=datetime(2026, 3, 3, tzinfo=UTC))
    assert first.created and not again.created
    assert again.received_at == WHEN and again.received_at.utcoffset() is not None
    assert again.received_at.isoformat() == "2026-03-02T06:00:00+00:00"


def test_a_contradicting_feedback_names_the_first_label_and_its_utc_time(tmp_path: Path) -> None:
    engine = _engine_with_prediction(tmp_path)
    record_feedback(engine, "p1", "1", now=WHEN)
    with pytest.raises(FeedbackConflict, match=r"label '1' \(received 2026-03-02 06:00:00 UTC\)"):
        record_feedback(engine, "p1", "0", now=WHEN)
