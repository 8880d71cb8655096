"""Small pure pieces of serving: settings, prediction ids, the bulk histogram update."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram
from pydantic import ValidationError

from serving.metrics import observe_many
from serving.routes.predict import _predictions_payload
from serving.settings import ServingSettings
from serving.state import new_prediction_ids


def test_settings_take_comma_separated_lists_and_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERLINE_SERVING_MODELS", "credit-risk, fraud")
    monkeypatch.setenv("LEDGERLINE_SERVING_API_KEYS", "s3cret-one-0123456789,s3cret-two-0123456789")
    monkeypatch.setenv("LEDGERLINE_SERVING_ADMIN_KEY", "s3cret-admin-0123456789")
    s = ServingSettings()
    assert s.models == ["credit-risk", "fraud"]
    assert [k.get_secret_value() for k in s.api_keys] == ["s3cret-one-0123456789", "s3cret-two-0123456789"]
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


def test_settings_without_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEDGERLINE_SERVING_API_KEYS", "LEDGERLINE_SERVING_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as exc:
        ServingSettings()
    assert {e["loc"][0] for e in exc.value.errors()} == {"api_keys", "admin_key"}
    with pytest.raises(ValidationError, match="at least 16"):
        ServingSettings(api_keys=[""], admin_key="a-long-enough-admin-key")


def test_prediction_ids_are_unique_time_ordered_uuid7s() -> None:
    first = new_prediction_ids(1000)
    second = new_prediction_ids(3)
    ids = first + second
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert first == sorted(first)
    assert max(first)[:13] <= min(second)[:13]  # millisecond prefix never goes back


def test_bulk_histogram_update_matches_one_observe_per_value() -> None:
    values = np.random.default_rng(1).random(1000)
    values[:5] = [0.0, 0.05, 0.1, 1.0, 0.5]  # on bucket bounds
    buckets = (0.05, 0.1, 0.5, 1.0)
    a = Histogram("a", "a", buckets=buckets, registry=CollectorRegistry())
    b = Histogram("b", "b", buckets=buckets, registry=CollectorRegistry())
    observe_many(a, values)
    for v in values:
        b.observe(float(v))
    sa, sb = a.collect()[0].samples, b.collect()[0].samples
    assert [(s.labels, s.value) for s in sa if s.name.endswith("_bucket")] == [
        (s.labels, s.value) for s in sb if s.name.endswith("_bucket")
    ]
    assert pytest.approx(a._sum.get()) == b._sum.get()


@pytest.mark.parametrize("name, version", [("credit-risk", "3"), ('we"ird \u00e9\\name', "12")])
def test_the_response_assembled_from_encoded_answers_is_byte_for_byte_pydantics(name: str, version: str) -> None:
    from pydantic_core import to_json

    answers = [
        {"probability_of_default": 0.25, "decision": "approve", "threshold": 0.5, "reason_codes": []},
        {"p": 1e-07, "reason_codes": [{"feature": "purpose", "value": 'x"},{\u2028', "contribution": 0.1}]},
        {},
    ]
    ids = new_prediction_ids(len(answers))
    expected = to_json({"predictions": [{"prediction_id": i, "model": name, "version": version, **a} for i, a in zip(ids, answers, strict=True)]})
    assert _predictions_payload(ids, name, version, [to_json(a) for a in answers]) == expected
    assert _predictions_payload(ids[:1], name, version, [to_json(answers[2])]) == to_json(
        {"predictions": [{"prediction_id": ids[0], "model": name, "version": version}]}
    )
