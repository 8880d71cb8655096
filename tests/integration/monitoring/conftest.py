"""Fixtures for the monitoring tests: one trained credit champion, per-test app databases, and a
writer that fills the prediction log the way serving does (``ledgerline.db.predictions``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

MODEL_NAME = "credit-monitoring-jobs"


@dataclass(frozen=True)
class MonitoredModel:
    trained: Any  # tests/conftest.py TrainedModel
    model: Any  # the champion's sklearn pipeline, to score logged predictions

    @property
    def name(self) -> str:
        return self.trained.model_name

    @property
    def version(self) -> str:
        return self.trained.version


@pytest.fixture(scope="session")
def monitored_model(train_credit: Callable[..., Any]) -> MonitoredModel:
    """A credit model trained on 6000 generated rows (seed 42), promoted to @champion."""
    import mlflow

    from monitoring.data import configure_mlflow

    trained = train_credit(MODEL_NAME)
    assert trained.champion == trained.version
    configure_mlflow(trained.settings)
    model = mlflow.sklearn.load_model(f"models:/{trained.model_name}/{trained.version}")
    return MonitoredModel(trained, model)


@pytest.fixture
def monitor_settings(monitored_model: MonitoredModel, fresh_app_db_url: str) -> Any:
    """The session's Settings with an app database of this test's own (prediction log, decisions)."""
    return monitored_model.trained.settings.model_copy(update={"app_db_url": fresh_app_db_url})


def _jsonable_record(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if isinstance(v, float) and v != v:
            out[k] = None
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def log_predictions(
    url: str,
    monitored: MonitoredModel,
    frame: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    seed: int = 0,
) -> pd.DataFrame:
    """Insert one prediction per row of ``frame`` (generator output), at times spread over ``[start, end)``,
    scored by the champion. Returns prediction_id, created_at, score and the true ``default`` label."""
    import sqlalchemy as sa

    from families.credit_risk.data import credit_spec
    from ledgerline import db

    features = credit_spec().feature_names
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(0.0, (end - start).total_seconds(), len(frame))
    created = [start + timedelta(seconds=float(s)) for s in offsets]
    scores = monitored.model.predict_proba(frame[features])[:, 1]
    ids = [str(uuid.uuid4()) for _ in range(len(frame))]
    raw_records = frame.drop(columns=["default"]).to_dict(orient="records")
    rows = [
        {
            "prediction_id": pid,
            "model_name": monitored.name,
            "model_version": monitored.version,
            "created_at": ts,
            "inputs": _jsonable_record(rec),
            "outputs": {"probability_of_default": float(p), "decision": "decline" if p > 0.5 else "approve"},
            "score": float(p),
            "latency_ms": 3.0,
        }
        for pid, ts, rec, p in zip(ids, created, raw_records, scores, strict=True)
    ]
    with db.engine_for(url).begin() as conn:
        conn.execute(sa.insert(db.predictions), rows)
    return pd.DataFrame({"prediction_id": ids, "created_at": created, "score": scores, "default": frame["default"].to_numpy()})


def log_feedback(url: str, model_name: str, labels: pd.DataFrame) -> None:
    """Insert feedback rows (prediction_id, label, received_at)."""
    import sqlalchemy as sa

    from ledgerline import db

    rows = [
        {"prediction_id": r.prediction_id, "model_name": model_name, "label": str(r.label), "received_at": r.received_at}
        for r in labels.itertuples()
    ]
    with db.engine_for(url).begin() as conn:
        conn.execute(sa.insert(db.feedback), rows)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)[:4000]


@dataclass(frozen=True)
class PredictionLog:
    """What tests use to fill the prediction log and the feedback table of their own app database."""

    url: str
    monitored: MonitoredModel

    def log(self, frame: pd.DataFrame, *, start: datetime, end: datetime, seed: int = 0) -> pd.DataFrame:
        return log_predictions(self.url, self.monitored, frame, start=start, end=end, seed=seed)

    def feedback(self, labels: pd.DataFrame) -> None:
        log_feedback(self.url, self.monitored.name, labels)

    @staticmethod
    def dump(obj: Any) -> str:
        return dump(obj)


@pytest.fixture
def prediction_log(monitor_settings: Any, monitored_model: MonitoredModel) -> PredictionLog:
    return PredictionLog(monitor_settings.resolved_app_db_url(), monitored_model)
