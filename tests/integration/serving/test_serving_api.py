"""The prediction API against the real mlflow server (Postgres + S3) and a Postgres app database:
answers, the prediction log under concurrent load, feedback, keys, operational endpoints."""

from __future__ import annotations

import concurrent.futures
import json
import logging
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_predictions_carry_id_model_version_probability_decision_and_reason_codes(
    credit_v1: Any, platform: Any, live_app: Any, sv: Any
) -> None:
    import mlflow
    import pandas as pd

    server = live_app(sv.serving_settings(families={"credit-risk": {"decision_threshold": 0.2}}), platform)
    record = sv.example_record(server)
    batch = [record, {**record, "debt_to_income": 55.0, "delinquencies_2y": 6}, {**record, "purpose": "small_business"}]
    with server.client() as c:
        one = c.post(f"/v1/models/{sv.MODEL}/predict", json=record, headers=sv.HEADERS)
        many = c.post(f"/v1/models/{sv.MODEL}/predict", json=batch, headers=sv.HEADERS)
    assert one.status_code == 200 and many.status_code == 200
    (single,) = one.json()["predictions"]
    answers = many.json()["predictions"]
    assert set(single) == {"prediction_id", "model", "version", "probability_of_default", "decision", "threshold", "reason_codes"}
    assert single["model"] == sv.MODEL and single["version"] == credit_v1.v1
    assert len({a["prediction_id"] for a in answers} | {single["prediction_id"]}) == 4

    mlflow.set_tracking_uri(credit_v1.settings.tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{sv.MODEL}/{credit_v1.v1}")
    expected = pipeline.predict_proba(pd.DataFrame(batch))[:, 1]
    np.testing.assert_allclose([a["probability_of_default"] for a in answers], expected, atol=1e-5)
    assert answers[0]["probability_of_default"] == pytest.approx(single["probability_of_default"], abs=1e-12)
    # the decision threshold is the one the version recorded at training (decision_threshold only for older versions)
    threshold = pipeline.decision_threshold_
    assert 0 < threshold < 1 and threshold != 0.2
    for a in answers:
        assert a["threshold"] == pytest.approx(threshold)
        assert a["decision"] == ("decline" if a["probability_of_default"] >= threshold else "approve")
        assert 0 < len(a["reason_codes"]) <= 3
        for reason in a["reason_codes"]:
            assert reason["contribution"] > 0
    risky = answers[1]["reason_codes"]
    assert {r["feature"] for r in risky} & {"debt_to_income", "delinquencies_2y"}
    assert {r["feature"]: r["value"] for r in risky}.get("delinquencies_2y", 6) == 6


def test_explain_false_answers_without_reason_codes_and_logs_them_so(platform: Any, live_app: Any, sv: Any) -> None:
    server = live_app(sv.serving_settings(), platform)
    record = sv.example_record(server)
    batch = [record, {**record, "debt_to_income": 55.0, "delinquencies_2y": 6}]
    url = f"/v1/models/{sv.MODEL}/predict"
    with server.client() as c:
        full = c.post(url, json=batch, headers=sv.HEADERS)
        lean = c.post(url, params={"explain": "false"}, json=batch, headers=sv.HEADERS)
        explicit = c.post(url, params={"explain": "true"}, json=record, headers=sv.HEADERS)
        bad = c.post(url, params={"explain": "maybe"}, json=record, headers=sv.HEADERS)
        described = c.get("/openapi.json", headers=sv.HEADERS)
    assert full.status_code == lean.status_code == explicit.status_code == 200, lean.text
    with_reasons, without = full.json()["predictions"], lean.json()["predictions"]
    assert all(a["reason_codes"] for a in with_reasons) and explicit.json()["predictions"][0]["reason_codes"]
    assert [a["reason_codes"] for a in without] == [[], []]
    for a, b in zip(with_reasons, without, strict=True):  # the same scores and decisions, only no reasons
        assert b["probability_of_default"] == pytest.approx(a["probability_of_default"], abs=1e-5)
        assert b["decision"] == a["decision"] and b["threshold"] == a["threshold"]
    assert bad.status_code == 422 and "explain" in bad.json()["detail"]
    assert bad.json()["errors"][0]["field"] == "explain"
    params = described.json()["paths"][url]["post"]["parameters"]
    assert {"name": "explain", "in": "query"}.items() <= params[0].items()
    server.stop()  # the log holds what was answered: no reason codes for the lean ones
    engine = sa.create_engine(platform.app_db_url)
    try:
        with engine.connect() as conn:
            logged = dict(conn.execute(sa.text("SELECT prediction_id, outputs FROM predictions")).all())
    finally:
        engine.dispose()
    assert [logged[a["prediction_id"]]["reason_codes"] for a in without] == [[], []]
    assert all(logged[a["prediction_id"]]["reason_codes"] for a in with_reasons)


def test_every_prediction_is_logged_under_concurrent_load_and_shutdown_flushes_the_log(
    platform: Any, live_app: Any, sv: Any
) -> None:
    """N answered records leave exactly N rows, written in batches off the request path."""
    server = live_app(sv.serving_settings(log_flush_interval_seconds=0.5, log_batch_rows=500), platform)
    record = sv.example_record(server)
    url = f"/v1/models/{sv.MODEL}/predict"

    def worker(i: int) -> list[str]:
        ids: list[str] = []
        with server.client() as c:
            for j in range(40):
                body: Any = record if j % 4 else [record] * (1 + (i + j) % 7)
                r = c.post(url, json=body, headers=sv.HEADERS)
                assert r.status_code == 200, r.text
                ids += [p["prediction_id"] for p in r.json()["predictions"]]
        return ids

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = [pid for chunk in pool.map(worker, range(8)) for pid in chunk]
    server.stop()  # graceful: the lifespan shutdown flushes whatever is still buffered
    assert len(ids) == len(set(ids)) > 320
    engine = sa.create_engine(platform.app_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT prediction_id, model_version, inputs, outputs, score FROM predictions")).all()
    finally:
        engine.dispose()
    assert len(rows) == len(ids)
    assert {r.prediction_id for r in rows} == set(ids)
    sample = rows[0]
    assert sample.inputs.keys() == record.keys()
    assert sample.outputs["probability_of_default"] == pytest.approx(sample.score)
    assert {"decision", "reason_codes", "threshold"} <= sample.outputs.keys()


def test_feedback_is_stored_once_and_unknown_ids_get_404(platform: Any, live_app: Any, sv: Any) -> None:
    server = live_app(sv.serving_settings(log_flush_interval_seconds=5), platform)
    record = sv.example_record(server)
    with server.client() as c:
        pid = c.post(f"/v1/models/{sv.MODEL}/predict", json=record, headers=sv.HEADERS).json()["predictions"][0]["prediction_id"]
        # the label arrives before the log writer flushed: it waits for its prediction instead of a false 404
        first = c.post("/v1/feedback", json={"prediction_id": pid, "label": 1}, headers=sv.HEADERS)
        again = c.post("/v1/feedback", json={"prediction_id": pid, "label": "1"}, headers=sv.HEADERS)
        other = c.post("/v1/feedback", json={"prediction_id": pid, "label": 0}, headers=sv.HEADERS)
        unknown = c.post("/v1/feedback", json={"prediction_id": "0190f0e0-0000-7000-8000-000000000000", "label": 1}, headers=sv.HEADERS)
        bad_label = c.post("/v1/feedback", json={"prediction_id": pid, "label": 7}, headers=sv.HEADERS)
        bad_body = c.post("/v1/feedback", json={"prediction": pid}, headers=sv.HEADERS)
    assert first.status_code == 201 and first.json()["status"] == "recorded"
    assert first.json()["model"] == sv.MODEL and first.json()["label"] == "1"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert other.status_code == 409 and "already has feedback" in other.json()["detail"]
    assert unknown.status_code == 404 and "no prediction with id" in unknown.json()["detail"]
    assert bad_label.status_code == 422 and "0" in bad_label.json()["detail"]
    assert bad_body.status_code == 422 and {e["field"] for e in bad_body.json()["errors"]} >= {"body.prediction_id"}
    engine = sa.create_engine(platform.app_db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT prediction_id, model_name, label FROM feedback")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in stored] == [(pid, sv.MODEL, "1")]


def test_missing_or_wrong_keys_get_401_or_403_and_keys_are_never_logged(
    platform: Any, live_app: Any, sv: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = live_app(sv.serving_settings(), platform)
    record = sv.example_record(server)
    predict = f"/v1/models/{sv.MODEL}/predict"
    with server.client() as c:
        assert c.post(predict, json=record).status_code == 401
        assert c.post(predict, json=record).headers["www-authenticate"].startswith("ApiKey")
        assert c.post(predict, json=record, headers={"X-API-Key": "guess"}).status_code == 403
        assert c.post(predict, json=record, headers={"X-API-Key": "second-key-for-rotation"}).status_code == 200
        assert c.post(predict, json=record, headers=sv.ADMIN).status_code == 200  # scope admin grants predict too (ledgerline.tenancy)
        assert c.post("/v1/feedback", json={"prediction_id": "x", "label": 1}).status_code == 401
        assert c.post("/v1/feedback", json={"prediction_id": "x", "label": 1}, headers={"X-API-Key": "no"}).status_code == 403
        missing = c.post("/admin/reload")
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        assert c.post("/admin/reload", headers=sv.HEADERS).status_code == 403
        reloaded = c.post("/admin/reload", headers=sv.ADMIN)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["models"][sv.MODEL]["changed"] is False
        assert c.get("/health").status_code == 200  # probes need no key
    assert sv.API_KEY not in caplog.text and sv.ADMIN_KEY not in caplog.text and "guess" not in caplog.text


def test_operational_endpoints_report_health_readiness_versions_metrics_and_docs(
    credit_v1: Any, platform: Any, live_app: Any, sv: Any
) -> None:
    server = live_app(sv.serving_settings(), platform)
    record = sv.example_record(server)
    with server.client() as c:
        for _ in range(3):
            c.post(f"/v1/models/{sv.MODEL}/predict", json=[record, record], headers=sv.HEADERS)
        c.post(f"/v1/models/{sv.MODEL}/predict", json={"nope": 1}, headers=sv.HEADERS)
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
        version = c.get("/version").json()
        metrics = c.get("/metrics")
        docs = c.get("/docs")
        openapi = c.get("/openapi.json").json()
        unknown = c.post("/v1/models/not-served/predict", json=record, headers=sv.HEADERS)
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["models"][sv.MODEL]["version"] == credit_v1.v1
    assert body["registry"]["reachable"] is True and body["prediction_log"]["database_available"] is True
    assert version["models"] == {sv.MODEL: credit_v1.v1} and version["libraries"]["xgboost"]
    text = metrics.text
    labels = {"model": sv.MODEL, "version": credit_v1.v1}
    assert sv.metric(text, "ledgerline_serving_requests_total", status="200", **labels) == 3
    assert sv.metric(text, "ledgerline_serving_requests_total", status="422", **labels) == 1
    assert sv.metric(text, "ledgerline_serving_request_latency_seconds_count", **labels) == 3
    assert sv.metric(text, "ledgerline_serving_prediction_score_count", **labels) == 6
    assert sv.metric(text, "ledgerline_serving_predictions_total", **labels) == 6
    assert sv.metric(text, "ledgerline_serving_errors_total", kind="InvalidRecords") == 1
    assert sv.metric(text, "ledgerline_serving_log_queue_rows") is not None
    assert sv.metric(text, "ledgerline_serving_model_loaded", **labels) == 1
    assert sv.metric(text, "ledgerline_serving_registry_up") == 1
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    op = openapi["paths"][f"/v1/models/{sv.MODEL}/predict"]["post"]
    assert op["security"] == [{"ApiKey": []}]
    assert "oneOf" in op["requestBody"]["content"]["application/json"]["schema"]
    assert unknown.status_code == 404 and sv.MODEL in unknown.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"annual_income": 1', 400, None),
        (b"[]", 422, "body"),
        (b'"a record"', 400, None),
        (json.dumps({"debt_to_income": "high"}).encode(), 422, "body.debt_to_income"),
        (b'{"loan_amount": NaN}', 422, "body.loan_amount"),
        (b'{"loan_amount": 1e308}', 422, "body.loan_amount"),
        (b"[" + b",".join([b"{}"] * 30) + b"]", 413, None),
        (b"x" * 70_000, 413, None),
    ],
)
def test_bad_input_gets_a_4xx_with_field_level_messages_never_a_500(
    platform: Any, live_app: Any, sv: Any, body: bytes, status: int, field: str | None
) -> None:
    server = live_app(sv.serving_settings(max_batch_rows=25, max_body_bytes=64 * 1024), platform)
    with server.client() as c:
        r = c.post(f"/v1/models/{sv.MODEL}/predict", content=body, headers={**sv.HEADERS, "content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    if field is not None:
        assert field in {e["field"] for e in r.json()["errors"]}
