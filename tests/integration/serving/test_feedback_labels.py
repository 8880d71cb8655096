"""The label contract end to end: a model trained on string labels ("bad"/"good") takes feedback in
those labels through ``POST /v1/feedback``, and ``ledgerline monitor`` reads them with the same codec."""

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

MODEL = "credit-string-labels"


def _jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v.item() if isinstance(v, np.generic) else v)
            for k, v in rec.items()}


def test_feedback_in_the_datasets_own_labels_makes_the_monitor_retrain_for_performance(
    session_settings: Any, fresh_app_db_url: str, live_app: Any, sv: Any, tmp_path: Path
) -> None:
    from families.credit_risk.data import generate_loan_applications
    from ledgerline import db
    from training.pipeline import TrainRequest, run_training

    raw = generate_loan_applications(6000, seed=42)
    raw["Status"] = np.where(raw.pop("default").to_numpy() == 1, "bad", "good")
    csv = tmp_path / "loans.csv"
    raw.to_csv(csv, index=False)
    trained = run_training(
        session_settings,
        TrainRequest(family="credit-risk", model_name=MODEL, data=csv, target="Status", positive_label="bad", logical_date="2026-01-05"),
    )
    assert trained.champion == trained.version

    platform = session_settings.model_copy(update={"app_db_url": fresh_app_db_url, "home": tmp_path / "home"})
    server = live_app(sv.serving_settings(models=[MODEL]), platform)
    with server.client() as c:
        models = c.get("/v1/models", headers=sv.HEADERS)
        models.raise_for_status()
        fields = list(models.json()["models"][MODEL]["example"])
        batch = [_jsonable(r) for r in generate_loan_applications(400, seed=7)[fields].to_dict(orient="records")]
        answers = c.post(f"/v1/models/{MODEL}/predict", json=batch, headers=sv.HEADERS)
        assert answers.status_code == 200, answers.text
        predictions = answers.json()["predictions"]
        cut = float(np.median([a["probability_of_default"] for a in predictions]))

        # contradicting outcomes: the riskier half repaid ("good"), the safer half defaulted ("bad");
        # every fifth one is sent as the canonical 0/1 instead (1 = the positive class, "bad")
        for i, a in enumerate(predictions):
            risky = a["probability_of_default"] >= cut
            label: str | int = ("good" if risky else "bad") if i % 5 else (0 if risky else 1)
            r = c.post("/v1/feedback", json={"prediction_id": a["prediction_id"], "label": label}, headers=sv.HEADERS)
            assert r.status_code == 201, r.text
            assert r.json()["label"] == ("0" if risky else "1")

        first = predictions[0]
        again = c.post("/v1/feedback", json={"prediction_id": first["prediction_id"],
                                              "label": r_label(first, cut)}, headers=sv.HEADERS)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        assert datetime.fromisoformat(again.json()["received_at"]).utcoffset() == timedelta(0)

        wrong = c.post("/v1/feedback", json={"prediction_id": first["prediction_id"], "label": "defaulted"},
                       headers=sv.HEADERS)
        assert wrong.status_code == 422
        assert "'bad' (positive), 'good' (negative)" in wrong.text

    with db.engine_for(fresh_app_db_url).connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT label, count(*) FROM feedback GROUP BY label")).all())
    assert stored == {"1": 200, "0": 200}

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_") or k == "LEDGERLINE_TEST_PG_URL"}
    env.update({
        "LEDGERLINE_TRACKING_URI": session_settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": fresh_app_db_url,
        "LEDGERLINE_DATA_DIR": str(session_settings.resolved_data_dir()),
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        # labels count at once (no label window), over the last day, from 200 labelled predictions
        "LEDGERLINE_MONITORING_LABEL_WINDOW_DAYS": "0",
        "LEDGERLINE_MONITORING_PERFORMANCE_WINDOW_DAYS": "1",
        "LEDGERLINE_MONITORING_MIN_LABELLED_ROWS": "200",
        "LEDGERLINE_MONITORING_MIN_CURRENT_ROWS": "100000",  # drift has too little data: performance alone decides
        "LEDGERLINE_MONITORING_COOLDOWN_DAYS": "0",
    })
    now = datetime.now(UTC) + timedelta(minutes=1)
    proc = subprocess.run(
        [sys.executable, "-m", "apps.cli", "monitor", MODEL, "--json", "--now", now.isoformat()],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # MLflow prints "View run ..." lines to stdout when the monitoring runs end: the JSON is the last thing
    decision = json.loads(proc.stdout[proc.stdout.index('{\n  "decision_id"'):])
    performance = decision["evidence"]["performance"]
    assert performance["status"] == "degraded", performance
    assert performance["labelled"] == 400 and "roc_auc" in performance["degraded"]
    assert decision["retrain"] is True and decision["reason"] == "performance"


def r_label(answer: dict[str, Any], cut: float) -> str:
    """The label first sent for ``answer`` in the user's terms (a repeat is a duplicate, not a conflict)."""
    return "good" if answer["probability_of_default"] >= cut else "bad"
