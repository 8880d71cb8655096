"""Model cards: the plan they state, the HTML, the credit family's parts (bootstrap intervals, outcomes
per protected group) and the gate's optional four-fifths rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from families.credit_risk import fit as credit_risk
from families.credit_risk.data import credit_spec, generate_loan_applications
from families.credit_risk.fit import CreditParams
from families.credit_risk.train import FAMILY
from features.spec import LABEL_COLUMN, DatasetSpec, conform
from ledgerline.errors import SpecError
from ledgerline.settings import Settings
from training import cards


def test_the_plan_a_card_states_has_the_monitoring_settings_names_and_defaults() -> None:
    from monitoring.settings import MonitoringSettings

    fields = MonitoringSettings.model_fields
    for key, default in cards.MONITORING_PLAN_DEFAULTS.items():
        assert fields[key].default == default, key
    plan = cards.monitoring_plan({"LEDGERLINE_MONITORING_COOLDOWN_DAYS": "5", "LEDGERLINE_MONITORING_MIN_CURRENT_ROWS": "9"})
    assert plan["cooldown_days"] == 5.0 and plan["min_current_rows"] == 9 and plan["window_days"] == 7.0


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_more_rows() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.uniform(size=100), rng.uniform(size=10_000)
    ci_small = cards.bootstrap(100, lambda i: {"mean": float(small[i].mean())})["mean"]
    ci_large = cards.bootstrap(10_000, lambda i: {"mean": float(large[i].mean())}, rounds=100)["mean"]
    assert ci_small[1] <= ci_small[0] <= ci_small[2] and ci_large[1] <= ci_large[0] <= ci_large[2]
    assert (ci_large[2] - ci_large[1]) < (ci_small[2] - ci_small[1]) / 5


def test_a_protected_column_must_exist_in_the_spec() -> None:
    spec = credit_spec()
    with pytest.raises(SpecError, match="protected names column 'sex'"):
        dataclasses.replace(spec, protected=("sex",))
    again = DatasetSpec.from_dict({**spec.to_dict(), "protected": ["home_ownership"]})
    assert again.protected == ("home_ownership",) and again.to_dict()["protected"] == ["home_ownership"]


@pytest.fixture(scope="module")
def trained() -> tuple[DatasetSpec, object, object]:
    spec = dataclasses.replace(credit_spec(), protected=("home_ownership", "annual_income"))
    frame = conform(generate_loan_applications(2500, seed=9), spec)
    train_df, test_df = FAMILY.split(frame, spec, 9)
    model, _ = credit_risk.select_and_train(train_df[spec.feature_names], train_df[LABEL_COLUMN].to_numpy(), spec,
                                            CreditParams(model_choice="scorecard", cv_folds=2))
    return spec, model, test_df


def test_credit_card_reports_outcomes_per_protected_group_and_the_gate_can_require_the_ratio(trained, tmp_path) -> None:
    spec, model, test_df = trained
    settings = Settings(home=tmp_path, families={"credit-risk": {"gate": {"min_approval_ratio": 0.99}}})  # type: ignore[call-arg]
    parts = FAMILY.card_parts(model, test_df, spec, settings)
    lo, value, hi = parts.metrics["roc_auc"][1], parts.metrics["roc_auc"][0], parts.metrics["roc_auc"][2]
    assert lo < value < hi and value > 0.6
    section = parts.sections["Outcomes per protected group (holdout, at the decision threshold)"]
    assert "**home_ownership**" in section and "**annual_income**" in section and "four-fifths" in section
    assert "the gate requires 0.99" in section
    p = credit_risk.predict_proba(model, test_df[spec.feature_names])
    rows, ratio = credit_risk.group_outcomes(p, test_df[LABEL_COLUMN].to_numpy().astype(int),
                                             credit_risk.group_labels(test_df["home_ownership"]), model.decision_threshold_)
    rates = [r["approval_rate"] for r in rows if r["rows"] >= 20]
    assert ratio == pytest.approx(min(rates) / max(rates)) and f"{ratio:.3f}" in section
    metrics = FAMILY.evaluate(model, test_df, spec)
    assert 0 < metrics["approval_ratio"] <= ratio  # the lowest over both attributes
    from training.gate import decide

    gate = decide(metrics, FAMILY.gate_policy(settings))
    assert not gate.passed and any("approval_ratio" in r for r in gate.reasons)
    assert "approval_ratio" not in {r.metric for r in FAMILY.gate_policy(Settings(home=tmp_path)).rules}  # off by default


def test_the_card_renders_every_section_as_markdown_and_offline_html(trained, tmp_path) -> None:
    spec, model, test_df = trained
    parts = FAMILY.card_parts(model, test_df, spec, Settings(home=tmp_path))  # type: ignore[call-arg]
    again = cards.CardParts.from_dict(__import__("json").loads(cards.parts_json(parts)))
    assert again.metrics.keys() == parts.metrics.keys()
    run = {"run_id": "r1", "tags": {"ledgerline.snapshot_digest": "d" * 64, "ledgerline.validation": "passed"},
           "params": {"rows_train": "2000", "rows_test": "500"}, "metrics": {"validation_evaluated": 40.0}}
    gate = {"decision": "PROMOTED to @champion", "reasons": ["roc_auc 0.8 >= floor 0.7"], "champion_version": "1", "notes": []}
    md = cards.render_markdown(name="m", version="2", family="credit-risk", run=run, parts=again, gate=gate,
                               plan=cards.monitoring_plan({}))
    for heading in ("Intended use", "Training data and lineage", "Model", "Metrics on the holdout", "Outcomes per protected group",
                    "Gate decision", "Known limitations", "Monitoring plan"):
        assert f"## {heading}" in md
    assert "compared with champion v1" in md and "cooldown 3 days" in md and "decision threshold" in md
    page = cards.markdown_to_html(md, "card")
    assert page.count("<table>") == 3 and "<h2>Monitoring plan</h2>" in page and "http" not in page.split("<body>")[0]


def test_the_fast_bootstrap_metrics_equal_sklearns() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ledgerline.metrics import average_precision, rank_auc

    rng = np.random.default_rng(3)
    p = np.round(rng.uniform(size=3000), 2)  # ties
    y = (rng.uniform(size=3000) < p).astype(int)
    assert rank_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
