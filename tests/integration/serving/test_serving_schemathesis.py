"""Schemathesis against the app's own OpenAPI schema (one operation per served model, its request
schema built from the model's signature and training spec): valid and invalid generated requests,
none may get a 5xx. Examples are bounded so the run stays well under a minute."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = {"POST": 120, "GET": 8}


def test_generated_requests_never_get_a_server_error(platform: Any, sv: Any) -> None:
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis import GenerationMode

    from serving.app import create_app

    app = create_app(sv.serving_settings(feedback_wait_seconds=0, max_batch_rows=20), platform)
    failures: list[str] = []
    calls = 0
    with TestClient(app):  # runs the lifespan: the champion is loaded, the writer runs
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        labels = {op.label for op in operations}
        assert f"POST /v1/models/{sv.MODEL}/predict" in labels and "POST /v1/feedback" in labels
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
