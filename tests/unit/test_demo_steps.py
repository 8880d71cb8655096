"""The demo loops over the registry: each family's step says what it sends, how it shows the answer and
what its serving needs; a family without a demo.py gets the default step."""

from __future__ import annotations

from typing import Any

from apps.demo_steps import DemoClient, DemoStep, demo_step
from ledgerline.families import FAMILIES


def test_every_registered_family_has_a_demo_step() -> None:
    for family in FAMILIES:
        assert isinstance(demo_step(family), DemoStep), family


def test_the_default_step_predicts_the_example_and_sends_label_0_as_feedback() -> None:
    sent: list[tuple[str, str, Any]] = []

    def call(method: str, path: str, key: str | None, body: Any) -> tuple[int, Any]:
        sent.append((method, path, body))
        if path.endswith("/predict"):
            return 200, {"predictions": [{"prediction_id": "p1", "version": "3", "probability_of_default": 0.1234,
                                          "decision": "approve", "threshold": 0.2, "reason_codes": []}]}
        return 201, {"status": "recorded"}

    client = DemoClient("http://127.0.0.1:8000", "k" * 16, "serving.log", call)
    shown = DemoStep().run(client, "loans", {"family": "credit-risk", "example": {"amount": 1}})
    assert [p for _, p, _ in sent] == ["/v1/models/loans/predict", "/v1/feedback"]
    assert sent[1][2] == {"prediction_id": "p1", "label": 0}
    assert "probability_of_default=0.123" in shown.lines[0] and "recorded" in shown.lines[1]
    assert "/v1/models/loans/predict" in shown.curl


def test_a_stateful_family_says_what_its_serving_needs_in_the_demo() -> None:
    envs = [demo_step(f).serving_env(None) for f in FAMILIES]
    with_redis = [demo_step(f).serving_env("redis://127.0.0.1:6379/0") for f in FAMILIES]
    assert any(env for env, _ in envs) and any(notes for _, notes in envs)  # memory fallback, and a note saying so
    assert all(not notes for _, notes in with_redis)
