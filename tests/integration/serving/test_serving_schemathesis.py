"""Schemathesis against the app's own OpenAPI schema (one operation per served model, its request
schema built from the model's signature and training spec, and each family's own routes): valid
and invalid generated requests, none may get a 5xx. One app serves a model of every family.
Examples are bounded so the run stays within a few minutes."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = {"POST": 40, "GET": 5}  # per operation and mode: one served model of every family keeps it a few minutes


@pytest.fixture(scope="module")
def category_model(credit_v1: Any) -> str:
    """A transaction-category model, trained through the real pipeline and promoted to @champion."""
    from training.pipeline import TrainRequest, run_training

    result = run_training(credit_v1.settings, TrainRequest(family="transaction-category", model_name="fuzz-category",
                                                           rows=3000, seed=42, logical_date="2026-01-05"))
    assert result.champion == result.version
    return "fuzz-category"


@pytest.fixture(scope="module")
def asset_model(credit_v1: Any) -> str:
    """An asset-valuation model on generated sales (a time and a segment column), promoted to @champion."""
    from training.pipeline import TrainRequest, run_training

    result = run_training(credit_v1.settings, TrainRequest(family="asset-valuation", model_name="fuzz-asset", rows=2500,
                                                           seed=2, logical_date="2026-01-05",
                                                           params={"n_estimators": 120, "learning_rate": 0.2}))
    assert result.champion == result.version, result.decision.reasons
    return "fuzz-asset"


@pytest.fixture(scope="module")
def served_models(
    credit_v1: Any, train_anomaly: Any, trained_forecast: Any, category_model: str, asset_model: str
) -> list[str]:
    """One model of every family (a family added to the registry needs a line here)."""
    from ledgerline.families import FAMILIES

    anomaly = train_anomaly("fuzz-anomaly")
    assert anomaly.champion == anomaly.version
    models = {"credit-risk": credit_v1.name, "transaction-anomaly": "fuzz-anomaly",
              "spending-forecast": trained_forecast.model_name, "transaction-category": category_model,
              "asset-valuation": asset_model}
    missing = sorted(set(FAMILIES) - set(models))
    assert not missing, f"no model of the families {missing} is fuzzed; train one here"
    return list(models.values())


def test_generated_requests_never_get_a_server_error(platform: Any, served_models: list[str], sv: Any) -> None:
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis import GenerationMode

    from serving.app import create_app

    app = create_app(sv.serving_settings(models=served_models, feedback_wait_seconds=0, max_batch_rows=20,
                                         profile_store_url="memory"), platform)
    failures: list[str] = []
    calls = 0
    with TestClient(app):  # runs the lifespan: the champion is loaded, the writer runs
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        labels = {op.label for op in operations}
        assert "POST /v1/feedback" in labels
        for name in served_models:
            assert f"POST /v1/models/{name}/predict" in labels, sorted(labels)
        for op in operations:
            key = sv.ADMIN if op.path.startswith("/admin") else sv.HEADERS
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                calls += _fuzz(op, mode, key, failures)
    assert calls > 150
    assert not failures, "\n".join(failures[:5])


def _fuzz(op: Any, mode: Any, key: dict[str, str], failures: list[str]) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    calls = 0

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES.get(op.method.upper(), 10),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        nonlocal calls
        response = case.call(headers=key)
        calls += 1
        if response.status_code >= 500:
            failures.append(f"{op.label}: {response.status_code} {response.text[:300]}\n{case.as_curl_command()}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
        assert mode.name == "NEGATIVE", op.label
    return calls
