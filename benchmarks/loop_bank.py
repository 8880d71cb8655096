"""The loop benchmark's bank database and traffic: the applications table, late outcomes, the prediction
log and feedback of the served champion, and the window query of the ``sql`` source.

``applications`` is what the team's system of record holds: an application row as soon as it is
made, ``outcome`` and ``outcome_at`` NULL until the servicer reports it. ``servicer`` (the bench's
hidden truth) holds every outcome with the time it becomes known; :func:`reveal` copies the ones
known by the simulated clock into ``applications``. Nothing of Ledgerline reads ``servicer``.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from loop_data import FEATURES

TARGET = "default"
COLUMNS = ("application_id", *FEATURES)
#: the sql source's query: the window's applications whose outcome is known by the window's end
WINDOW_QUERY = (
    "SELECT " + ", ".join(COLUMNS) + ', outcome AS "default" FROM applications '
    "WHERE applied_at >= :start AND applied_at < :end AND outcome IS NOT NULL AND outcome_at < :end "
    "ORDER BY application_id"
)
#: the oracle's query: every application of the window with its outcome, known or not (the oracle sees the future)
ORACLE_QUERY = (
    "SELECT " + ", ".join(COLUMNS) + ', s.outcome AS "default" FROM applications JOIN servicer s USING (application_id) '
    "WHERE applied_at >= :start AND applied_at < :end ORDER BY application_id"
)
_DDL = [
    """CREATE TABLE applications (
        application_id text PRIMARY KEY, applied_at timestamptz NOT NULL,
        annual_income double precision, debt_to_income double precision, revolving_utilization double precision,
        delinquencies_2y bigint, inquiries_6m bigint, employment_length_years double precision,
        loan_amount double precision, term_months bigint, purpose text, home_ownership text,
        outcome integer, outcome_at timestamptz)""",
    "CREATE INDEX applications_applied_at ON applications (applied_at)",
    "CREATE TABLE servicer (application_id text PRIMARY KEY, outcome integer NOT NULL, outcome_at timestamptz NOT NULL)",
]


def create_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for stmt in _DDL:
            conn.execute(sa.text(stmt))


def insert_week(engine: sa.Engine, frame: pd.DataFrame) -> None:
    """The week's applications (outcome unknown) and the servicer's future outcomes."""
    apps = frame[["application_id", "applied_at", *FEATURES]]
    truth = frame[["application_id", TARGET, "outcome_at"]].rename(columns={TARGET: "outcome"})
    with engine.begin() as conn:
        apps.to_sql("applications", conn, if_exists="append", index=False, method="multi", chunksize=2000)
        truth.to_sql("servicer", conn, if_exists="append", index=False, method="multi", chunksize=5000)


def reveal(engine: sa.Engine, clock: datetime) -> int:
    """Outcomes known by ``clock`` land in ``applications``; returns how many arrived now."""
    with engine.begin() as conn:
        res = conn.execute(sa.text(
            "UPDATE applications a SET outcome = s.outcome, outcome_at = s.outcome_at FROM servicer s "
            "WHERE a.application_id = s.application_id AND a.outcome IS NULL AND s.outcome_at < :clock"), {"clock": clock})
        return int(res.rowcount or 0)


def read_window(engine: sa.Engine, start: datetime, end: datetime) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(WINDOW_QUERY), conn, params={"start": start, "end": end})


def count_window(engine: sa.Engine, start: datetime, end: datetime) -> int:
    query = f"SELECT count(*) FROM ({WINDOW_QUERY}) w"
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query), {"start": start, "end": end}).scalar_one())


def write_source(path: Path, url: str, query: str, window: dict[str, Any]) -> Path:
    """A source config (``ledgerline train --source``, the retrain DAG's LEDGERLINE_SOURCE__<FAMILY>): one sql source."""
    import yaml

    path.write_text(yaml.safe_dump({"window": window, "sources": [{"kind": "sql", "url": url, "query": query}]},
                                   sort_keys=False))
    return path


def export_window(engine: sa.Engine, start: datetime, end: datetime, path: Path) -> int:
    """The window query's rows as a Parquet file (the data_path fallback when there is no sql source)."""
    frame = read_window(engine, start, end)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return len(frame)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def log_served(app_engine: sa.Engine, model_name: str, version: str, frame: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Write the week's answers to the prediction log (created at the application's time); return the
    ids with each outcome and when it becomes known (for the feedback)."""
    from ledgerline import db

    ids = [str(uuid.uuid4()) for _ in range(len(frame))]
    records = frame[list(FEATURES)].to_dict(orient="records")
    rows = [
        {"prediction_id": pid, "model_name": model_name, "model_version": version,
         "created_at": at.to_pydatetime(), "inputs": json.loads(json.dumps({k: _plain(v) for k, v in rec.items()})),
         "outputs": {"probability_of_default": float(p)}, "score": float(p), "latency_ms": 1.0}
        for pid, at, rec, p in zip(ids, frame["applied_at"], records, scores, strict=True)
    ]
    with app_engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(sa.insert(db.predictions), rows[i:i + 2000])
    return pd.DataFrame({"prediction_id": ids, "label": frame[TARGET].to_numpy(), "outcome_at": frame["outcome_at"].to_numpy()})


def send_feedback(app_engine: sa.Engine, model_name: str, served: pd.DataFrame, since: datetime, until: datetime) -> int:
    """Feedback for served predictions whose outcome became known in ``[since, until)``, received then."""
    from ledgerline import db

    at = pd.to_datetime(served["outcome_at"], utc=True)
    due = served[(at >= pd.Timestamp(since)) & (at < pd.Timestamp(until))]
    rows = [{"prediction_id": pid, "model_name": model_name, "label": str(int(label)), "received_at": t.to_pydatetime()}
            for pid, label, t in zip(due["prediction_id"], due["label"], pd.to_datetime(due["outcome_at"], utc=True),
                                     strict=True)]
    if rows:
        with app_engine.begin() as conn:
            conn.execute(sa.insert(db.feedback), rows)
    return len(rows)
