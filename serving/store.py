"""Serving's side of the app database: the engine, batched prediction-log inserts, feedback.

The tables are :data:`ledgerline.db.predictions` and :data:`ledgerline.db.feedback`
(monitoring reads them). Inserts are idempotent on ``prediction_id`` so a batch that
is retried after a lost acknowledgement is not stored twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledgerline import db
from ledgerline.db import make_engine  # noqa: F401  (re-exported: serving builds its engine here)
from serving.errors import FeedbackConflict, StoreUnavailable, UnknownPrediction

logger = logging.getLogger(__name__)

#: Errors that mean "the database is away", as opposed to a bug in what we send.
DB_DOWN_ERRORS: tuple[type[BaseException], ...] = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be reached (retry later), not that the data is bad."""
    if isinstance(exc, DB_DOWN_ERRORS):
        return True
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2 is locked in
        return False
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)


class TableGuard:
    """Migrates the app database (prediction and feedback tables included) once per engine, on first use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._done = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self._done:
            return
        with self._lock:
            if self._done:
                return
            db.upgrade(self.engine)  # migrations run under a lock: workers starting together do not race
            self._done = True


@dataclass(frozen=True)
class LogEntry:
    """The log rows of one request, inputs and outputs already JSON-encoded (about 0.6 kB a row)."""

    model_name: str
    model_version: str
    created_at: datetime
    ids: Sequence[str]
    inputs: Sequence[str]  # one JSON object per row: the record as validated
    outputs: Sequence[str]  # one JSON object per row: the family's answer
    scores: Sequence[float]
    latency_ms: float
    batch_id: str | None = None  # the batch job that scored these rows (None: an online request)

    @property
    def rows(self) -> int:
        return len(self.ids)

    @classmethod
    def encode(
        cls,
        model_name: str,
        model_version: str,
        created_at: datetime,
        ids: Sequence[str],
        records: Sequence[Mapping[str, Any]],
        answers: Sequence[Mapping[str, Any]],
        scores: Sequence[float],
        latency_ms: float,
    ) -> LogEntry:
        from pydantic_core import to_json

        return cls(
            model_name,
            model_version,
            created_at,
            ids,
            [to_json(r).decode() for r in records],
            [to_json(a).decode() for a in answers],
            scores,
            latency_ms,
        )


_PG_INSERT = """
INSERT INTO predictions (prediction_id, model_name, model_version, created_at, inputs, outputs, score, latency_ms,
                         batch_id)
SELECT r.prediction_id, r.model_name, r.model_version, r.created_at, i.value, o.value, r.score, r.latency_ms, r.batch_id
FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::float8[], %s::float8[], %s::text[])
     WITH ORDINALITY AS r(prediction_id, model_name, model_version, created_at, score, latency_ms, batch_id, n)
JOIN json_array_elements(%s::json) WITH ORDINALITY AS i(value, n) USING (n)
JOIN json_array_elements(%s::json) WITH ORDINALITY AS o(value, n) USING (n)
ON CONFLICT (prediction_id) DO NOTHING
"""


def write_predictions(engine: Engine, entries: Sequence[LogEntry]) -> int:
    """Insert the rows of ``entries`` in one transaction; returns the rows sent."""
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2":
        return _write_postgres(engine, entries)
    return _write_generic(engine, entries)


_COPY = (
    "COPY predictions (prediction_id, model_name, model_version, created_at, inputs, outputs, score, latency_ms, batch_id) "
    "FROM STDIN WITH (NULL '')"
)
_COPY_UNSAFE = ("\t", "\n", "\r", "\\")


def _copy_text(entries: Sequence[LogEntry]) -> str | None:
    """The batch in COPY text format; None when a name would need escaping beyond backslashes."""
    lines: list[str] = []
    for e in entries:
        if any(ch in e.model_name or ch in e.model_version or ch in (e.batch_id or "") for ch in _COPY_UNSAFE):
            return None
        head = f"\t{e.model_name}\t{e.model_version}\t{e.created_at.isoformat()}\t"
        tail = f"\t{e.latency_ms!r}\t{e.batch_id or ''}\n"  # '' is NULL (below): no backslash to escape
        lines.extend(
            f"{pid}{head}{inp}\t{out}\t{float(s)!r}{tail}"
            for pid, inp, out, s in zip(e.ids, e.inputs, e.outputs, e.scores, strict=True)
        )
    text = "".join(lines)
    # JSON has no raw tabs or newlines (they are escaped as \t, \n), but its backslashes must be doubled for COPY
    return text.replace("\\", "\\\\") if "\\" in text else text


def _write_postgres(engine: Engine, entries: Sequence[LogEntry]) -> int:
    """COPY the batch straight into ``predictions`` (Postgres' fastest way in).

    COPY cannot skip duplicates, so a batch that is retried after its commit was in fact
    applied (the acknowledgement was lost) fails with a unique violation; that batch then
    goes through ``INSERT ... ON CONFLICT DO NOTHING`` instead.
    """
    import io

    import psycopg2.errors

    text = _copy_text(entries)
    if text is not None:
        try:
            with engine.begin() as conn:
                dbapi: Any = conn.connection.dbapi_connection
                with dbapi.cursor() as cur:
                    cur.copy_expert(_COPY, io.StringIO(text))
            return sum(e.rows for e in entries)
        except psycopg2.errors.UniqueViolation:
            logger.info("prediction log: batch partly written already (a retried write); inserting the rest")
    return _insert_postgres(engine, entries)


def _insert_postgres(engine: Engine, entries: Sequence[LogEntry]) -> int:
    """One idempotent statement for the whole batch: arrays for the scalars, one JSON array per JSON column."""
    ids: list[str] = []
    names: list[str] = []
    versions: list[str] = []
    created: list[datetime] = []
    scores: list[float] = []
    latencies: list[float] = []
    batch_ids: list[str | None] = []
    inputs: list[str] = []
    outputs: list[str] = []
    for e in entries:
        n = e.rows
        ids.extend(e.ids)
        names.extend([e.model_name] * n)
        versions.extend([e.model_version] * n)
        created.extend([e.created_at] * n)
        scores.extend(e.scores)
        latencies.extend([e.latency_ms] * n)
        batch_ids.extend([e.batch_id] * n)
        inputs.extend(e.inputs)
        outputs.extend(e.outputs)
    params = (ids, names, versions, created, scores, latencies, batch_ids, f"[{','.join(inputs)}]", f"[{','.join(outputs)}]")
    with engine.begin() as conn:
        conn.exec_driver_sql(_PG_INSERT, params)
    return len(ids)


#: ``predictions`` as the generic writer sees it: the JSON columns take the encoded text as it is
#: (SQLite stores JSON as text; the table itself is defined in ledgerline.db).
_text_metadata = sa.MetaData()
_predictions_text = sa.Table(
    "predictions",
    _text_metadata,
    *(
        sa.Column(c.name, sa.Text if c.name in ("inputs", "outputs") else c.type, primary_key=c.primary_key)
        for c in db.predictions.columns
    ),
)


def _write_generic(engine: Engine, entries: Sequence[LogEntry]) -> int:
    rows: list[dict[str, Any]] = [
        {
            "prediction_id": pid,
            "model_name": e.model_name,
            "model_version": e.model_version,
            "created_at": e.created_at,
            "inputs": inp,
            "outputs": out,
            "score": float(s),
            "latency_ms": e.latency_ms,
            "batch_id": e.batch_id,
        }
        for e in entries
        for pid, inp, out, s in zip(e.ids, e.inputs, e.outputs, e.scores, strict=True)
    ]
    table = _predictions_text if engine.dialect.name == "sqlite" else db.predictions
    if table is db.predictions:  # a dialect with a real JSON type: hand it objects
        import json

        for r in rows:
            r["inputs"], r["outputs"] = json.loads(r["inputs"]), json.loads(r["outputs"])
    with engine.begin() as conn:
        conn.execute(_insert_ignoring_duplicates(engine, table, "prediction_id"), rows)
    return len(rows)


def _insert_ignoring_duplicates(engine: Engine, table: sa.Table, key: str) -> Any:
    name = engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=[key])
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
    return table.insert()


# --------------------------------------------------------------------------- feedback


@dataclass(frozen=True)
class FeedbackResult:
    prediction_id: str
    model_name: str
    label: str
    received_at: datetime
    created: bool  # False: the same feedback was already stored
    pending: bool = False  # True: the prediction's row is not in the database yet (model_name is "")


def find_prediction(engine: Engine, prediction_id: str) -> str | None:
    """The model name of a logged prediction, or None."""
    q = sa.select(db.predictions.c.model_name).where(db.predictions.c.prediction_id == prediction_id)
    try:
        with engine.connect() as conn:
            return conn.execute(q).scalar_one_or_none()
    except DB_DOWN_ERRORS as exc:
        raise StoreUnavailable("the feedback store (app database) is unreachable; retry the same request later") from exc


def record_feedback(engine: Engine, prediction_id: str, label: str, *, now: datetime | None = None) -> FeedbackResult:
    """Store the outcome of a logged prediction once.

    Posting the same label again is a no-op (``created=False``); a different label for an
    already labelled prediction raises FeedbackConflict; an unknown id raises UnknownPrediction.
    """
    now = _as_utc(now or datetime.now(UTC))
    fb = db.feedback
    try:
        with engine.begin() as conn:
            model_name = conn.execute(
                sa.select(db.predictions.c.model_name).where(db.predictions.c.prediction_id == prediction_id)
            ).scalar_one_or_none()
            if model_name is None:
                raise UnknownPrediction(
                    f"no prediction with id '{prediction_id}' was logged; send the prediction_id a /predict answer returned"
                )
            _move_pending(engine, conn, [prediction_id])  # a label that came early counts as the first one
            stmt = _insert_ignoring_duplicates(engine, fb, "prediction_id").values(
                prediction_id=prediction_id, model_name=model_name, label=label, received_at=now
            )
            inserted = conn.execute(stmt).rowcount == 1
            if inserted:
                return FeedbackResult(prediction_id, model_name, label, now, True)
            existing = conn.execute(
                sa.select(fb.c.label, fb.c.received_at).where(fb.c.prediction_id == prediction_id)
            ).one()
    except DB_DOWN_ERRORS as exc:
        raise StoreUnavailable("the feedback store (app database) is unreachable; retry the same request later") from exc
    received_at = _as_utc(existing.received_at)  # SQLite hands back naive times, Postgres the session's zone
    if existing.label != label:
        raise FeedbackConflict(
            f"prediction '{prediction_id}' already has feedback with label '{existing.label}' "
            f"(received {received_at:%Y-%m-%d %H:%M:%S} UTC); a label is recorded once and not overwritten"
        )
    return FeedbackResult(prediction_id, model_name, label, received_at, False)


def _as_utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC time; a naive time from the database is UTC (it was written as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _move_pending(engine: Engine, conn: sa.Connection, ids: Sequence[str] | None) -> list[MovedFeedback]:
    """Within ``conn``'s transaction: pending feedback whose prediction row exists goes to ``feedback``;
    returns what moved."""
    fp, p = db.feedback_pending, db.predictions
    q = sa.select(fp.c.prediction_id, p.c.model_name, fp.c.label, fp.c.received_at).select_from(
        fp.join(p, p.c.prediction_id == fp.c.prediction_id)
    )
    q = q.where(fp.c.prediction_id.in_(ids)) if ids is not None else q.limit(5000)
    rows = conn.execute(q).all()
    if not rows:
        return []
    conn.execute(
        _insert_ignoring_duplicates(engine, db.feedback, "prediction_id"),
        [{"prediction_id": r[0], "model_name": r[1], "label": r[2], "received_at": r[3]} for r in rows],
    )
    conn.execute(fp.delete().where(fp.c.prediction_id.in_([r[0] for r in rows])))
    return [MovedFeedback(str(r[0]), str(r[1]), str(r[2])) for r in rows]


class MovedFeedback(NamedTuple):
    """A pending label attached to its prediction once the prediction's row was written."""

    prediction_id: str
    model_name: str
    label: str


def reconcile_pending_feedback(engine: Engine) -> list[MovedFeedback]:
    """Attach pending feedback to predictions written since; returns the labels that moved."""
    with engine.begin() as conn:
        return _move_pending(engine, conn, None)


def record_pending_feedback(
    engine: Engine, prediction_id: str, label: str, *, now: datetime | None = None
) -> FeedbackResult:
    """Keep the outcome of a prediction whose row has not reached the database yet (it is still in
    a worker's log buffer). The prediction log's writer moves it to ``feedback`` when the row lands.

    Same rules as :func:`record_feedback`: the same label again is a duplicate, a different one a
    FeedbackConflict. If the row arrived meanwhile, this is :func:`record_feedback`.
    """
    now = now or datetime.now(UTC)
    fp = db.feedback_pending
    try:
        if find_prediction(engine, prediction_id) is not None:
            return record_feedback(engine, prediction_id, label, now=now)
        with engine.begin() as conn:
            stmt = _insert_ignoring_duplicates(engine, fp, "prediction_id").values(
                prediction_id=prediction_id, label=label, received_at=now
            )
            if conn.execute(stmt).rowcount == 1:
                return FeedbackResult(prediction_id, "", label, _as_utc(now), True, pending=True)
            existing = conn.execute(
                sa.select(fp.c.label, fp.c.received_at).where(fp.c.prediction_id == prediction_id)
            ).one_or_none()
    except DB_DOWN_ERRORS as exc:
        raise StoreUnavailable("the feedback store (app database) is unreachable; retry the same request later") from exc
    if existing is None:  # moved to feedback between our insert and our read
        return record_feedback(engine, prediction_id, label, now=now)
    if existing.label != label:
        raise FeedbackConflict(
            f"prediction '{prediction_id}' already has feedback with label '{existing.label}' "
            f"(received {_as_utc(existing.received_at):%Y-%m-%d %H:%M:%S} UTC); a label is recorded once and not overwritten"
        )
    return FeedbackResult(prediction_id, "", label, _as_utc(existing.received_at), False, pending=True)
