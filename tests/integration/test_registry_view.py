"""What a person sees in the MLflow UI after training: the classic runs view, and model versions
described in words (metrics, data, the gate's verdict) with only the tags machines read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from mlflow import MlflowClient

from ledgerline.registry import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, ensure_experiment

pytestmark = pytest.mark.integration

MODEL = "credit-registry-view"
MACHINE_TAGS = {
    "ledgerline.run_id",  # serving and monitoring fall back to it
    "ledgerline.family",  # serving's adapter, the monitoring DAG
    "ledgerline.trigger",
    "ledgerline.logical_date",
    "ledgerline.gate.decision",
    "ledgerline.gate.reasons",
    "ledgerline.model_card",  # where the version's model card is (GET /v1/models/{name})
    "ledgerline.gate.champion_version",
}


def _client(trained: Any) -> MlflowClient:
    return MlflowClient(trained.settings.tracking_uri)


def test_the_training_experiment_is_marked_as_model_training_so_the_ui_opens_the_runs_view(
    train_credit: Callable[..., Any],
) -> None:
    trained = train_credit(MODEL)
    c = _client(trained)
    exp = c.get_experiment(c.get_run(trained.run_id).info.experiment_id)
    assert exp.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_an_experiment_created_before_the_kind_tag_gets_it_on_its_next_use(session_settings: Any) -> None:
    c = MlflowClient(session_settings.tracking_uri)
    name = f"ledgerline/old-experiment-{uuid.uuid4().hex[:8]}"
    exp_id = c.create_experiment(name)  # as older Ledgerline versions created them
    assert EXPERIMENT_KIND_TAG not in c.get_experiment(exp_id).tags

    assert ensure_experiment(session_settings, name, {"ledgerline.kind": "monitoring"}) == exp_id

    assert c.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_a_promoted_version_has_a_description_with_metrics_data_and_the_verdict_and_only_machine_tags(
    train_credit: Callable[..., Any],
) -> None:
    trained = train_credit(MODEL)
    mv = _client(trained).get_model_version(MODEL, trained.version)

    text = mv.description
    assert "roc_auc 0." in text and "pr_auc 0." in text and "brier 0." in text, text
    assert "6,000 rows" in text and "2026-01-05" in text and trained.snapshot_uri in text, text
    assert "trigger `manual`" in text and trained.run_id in text, text
    assert "**Gate:** PROMOTED to @champion" in text and "pending" not in text, text
    ours = {k for k in mv.tags if k.startswith("ledgerline.")}
    assert ours == MACHINE_TAGS, sorted(ours)


def test_the_next_version_is_described_against_the_champion_it_was_compared_with(
    train_credit: Callable[..., Any],
) -> None:
    first = train_credit(MODEL)
    second = train_credit(MODEL, seed=7, logical_date="2026-01-12")
    text = _client(second).get_model_version(MODEL, second.version).description

    if second.decision_passed:
        assert f"PROMOTED to @champion (previous champion v{first.version})" in text, text
    else:
        assert f"rejected; @champion stays v{first.version}" in text, text
    assert text.count("**Gate:**") == 1, text
