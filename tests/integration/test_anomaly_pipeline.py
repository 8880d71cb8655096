"""The transaction-anomaly family through the same pipeline as credit-risk: real mlflow server,
Postgres registry, S3 artifacts; no family detail in the core."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from families.transaction_anomaly.data import generate_transactions
from ledgerline.families import FAMILY_TAG
from training.pipeline import TrainRequest, run_training

pytestmark = pytest.mark.integration


def test_anomaly_model_is_trained_gated_on_its_alert_rate_and_promoted(train_anomaly):
    m = train_anomaly("anomaly-pipeline")
    c = MlflowClient(m.settings.tracking_uri)
    assert m.champion == m.version and m.decision_passed

    run = c.get_run(m.run_id)
    metrics = run.data.metrics
    # the holdout's alert rate, with its sampling noise, reaches into the 0.5-2x band around the 0.5 % budget
    assert metrics["test_alert_rate_ratio_low"] <= 2.0 and metrics["test_alert_rate_ratio_high"] >= 0.5
    assert metrics["test_roc_auc"] > 0.8  # generated fraud is far from normal behaviour
    assert "test_recall_account_takeover" in metrics
    assert run.data.params["alert_budget"] == "0.005"
    paths = {a.path for a in c.list_artifacts(m.run_id, "plots")}
    assert {"plots/score_distribution.png", "plots/precision_recall.png"} <= paths

    mv = c.get_model_version("anomaly-pipeline", m.version)
    assert mv.tags[FAMILY_TAG] == "transaction-anomaly"
    reasons = json.loads(mv.tags["ledgerline.gate.reasons"])
    assert any(r.startswith("alert_rate_ratio_low") and "<= ceiling 2.0000" in r for r in reasons)
    # the logged signature is the behavioural feature vector (what `mlflow models serve` can score)
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/anomaly-pipeline/{m.version}")
    assert "amount_log_z" in [col["name"] for col in info.signature.inputs.to_dict()]


def test_bring_your_own_table_without_customer_or_time_trains_on_its_columns(session_settings, tmp_path):
    raw = generate_transactions(3000, seed=3).drop(columns=["customer_id", "timestamp", "fraud_pattern"])
    path = tmp_path / "plain.csv"
    raw.to_csv(path, index=False)
    result = run_training(
        session_settings,
        TrainRequest(family="transaction-anomaly", model_name="anomaly-plain", data=path, target="is_fraud",
                     positive_label="1", logical_date="2026-01-05"),
    )
    run = MlflowClient(session_settings.tracking_uri).get_run(result.run_id)
    import mlflow

    inputs = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/evaluation/threshold.json")
    assert inputs["behavioural_features"] is False
    assert "amount" in inputs["inputs"] and "is_fraud" not in inputs["inputs"]
    assert np.isfinite(run.data.metrics["test_alert_rate"])
