"""The label contract end to end for transaction anomaly: analysts post a verdict ("fraud" /
"legitimate", or the dataset's 1/0) per prediction through ``POST /v1/feedback``, and
``ledgerline monitor`` turns verdicts contradicting the alerts into a performance retrain."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

MODEL = "anomaly-verdicts"
STREAM_ROWS = 6000  # about 30 alerts at the default 0.5 % budget
MIN_LABELLED = 10


def _jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif hasattr(v, "isoformat"):
            v = v.isoformat()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def test_analyst_verdicts_contradicting_the_alerts_make_the_monitor_retrain_for_performance(
    session_settings: Any, train_anomaly: Any, fresh_app_db_url: str, live_app: Any, sv: Any, tmp_path: Path
) -> None:
    from families.transaction_anomaly.data import generate_transactions
    from ledgerline import db
    from ledgerline.registry import client

    trained = train_anomaly(MODEL)
    assert trained.champion == trained.version
    offline = client(session_settings).get_run(trained.run_id).data.metrics
    # the precondition of the test: "every alert was legitimate" is a real drop from the offline precision
    assert offline["test_precision_at_budget"] > 0.2, offline

    platform = session_settings.model_copy(update={"app_db_url": fresh_app_db_url, "home": tmp_path / "home"})
    server = live_app(sv.serving_settings(models=[MODEL], families={"transaction-anomaly": {"profile_store_url": "memory"}}), platform)
    with server.client() as c:
        models = c.get("/v1/models", headers=sv.HEADERS)
        models.raise_for_status()
        fields = list(models.json()["models"][MODEL]["example"])
        stream = generate_transactions(STREAM_ROWS, seed=7, start="2026-04-01")[fields]
        predictions: list[dict[str, Any]] = []
        for lo in range(0, len(stream), 1000):  # in time order: every answer updates its customer's profile
            batch = [_jsonable(r) for r in stream.iloc[lo : lo + 1000].to_dict(orient="records")]
            answers = c.post(f"/v1/models/{MODEL}/predict", json=batch, headers=sv.HEADERS)
            assert answers.status_code == 200, answers.text
            predictions.extend(answers.json()["predictions"])
        alerts = [a for a in predictions if a["is_anomaly"]]
        assert len(alerts) >= MIN_LABELLED, f"only {len(alerts)} alerts in {len(predictions)} predictions"

        # every alert was a false alarm; every third verdict comes as the dataset's own 0 instead of "legitimate"
        for i, a in enumerate(alerts):
            verdict: str | int = 0 if i % 3 == 0 else "legitimate"
            r = c.post("/v1/feedback", json={"prediction_id": a["prediction_id"], "label": verdict}, headers=sv.HEADERS)
            assert r.status_code == 201, r.text
            assert r.json()["label"] == "0"
        quiet = next(a for a in predictions if not a["is_anomaly"])
        wrong = c.post("/v1/feedback", json={"prediction_id": quiet["prediction_id"], "label": "suspicious"},
                       headers=sv.HEADERS)
        assert wrong.status_code == 422
        assert "'fraud' (positive), 'legitimate' (negative)" in wrong.text

    with db.engine_for(fresh_app_db_url).connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT label, count(*) FROM feedback GROUP BY label")).all())
    assert stored == {"0": len(alerts)}

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_") or k == "LEDGERLINE_TEST_PG_URL"}
    env.update({
        "LEDGERLINE_TRACKING_URI": session_settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": fresh_app_db_url,
        "LEDGERLINE_DATA_DIR": str(session_settings.resolved_data_dir()),
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        # verdicts count at once (no label window), over the last day, from a handful of labelled alerts;
        # the drift job and the alert-rate check run on the stream (small Evidently sample)
        "LEDGERLINE_MONITORING_LABEL_WINDOW_DAYS": "0",
        "LEDGERLINE_MONITORING_WINDOW_DAYS": "1",
        "LEDGERLINE_MONITORING_MIN_LABELLED_ROWS": str(MIN_LABELLED),
        "LEDGERLINE_MONITORING_MIN_CURRENT_ROWS": "1000",
        "LEDGERLINE_MONITORING_EVIDENTLY_SAMPLE_SIZE": "2000",
        "LEDGERLINE_MONITORING_COOLDOWN_DAYS": "0",
    })
    now = datetime.now(UTC) + timedelta(minutes=1)
    proc = subprocess.run(
        [sys.executable, "-m", "apps.cli", "monitor", MODEL, "--json", "--now", now.isoformat()],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    decision = json.loads(proc.stdout[proc.stdout.index('{\n  "decision_id"'):])
    performance = decision["evidence"]["performance"]
    assert performance["status"] == "degraded", performance
    assert performance["labelled"] == len(alerts) and "precision_at_budget" in performance["degraded"]
    assert performance["metrics"]["precision_at_budget"] == 0.0
    assert performance["baseline"]["precision_at_budget"] == pytest.approx(offline["test_precision_at_budget"], abs=1e-6)
    assert performance["window_check"]["rows"] == len(predictions)
    assert performance["window_check"]["status"] in {"ok", "degraded"}  # the alert rate was judged, either way

    drift = decision["evidence"]["drift"]
    assert drift["status"] in {"ok", "drift"} and drift["current_rows"] == len(predictions), drift
    assert set(drift["psi"]) == {"amount", "currency", "merchant_category", "channel", "country"}
    assert decision["retrain"] is True and decision["reason"] == "performance"
