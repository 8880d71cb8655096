"""The credit family's scorecard challenger, model choice and decision threshold (pure, tiny data)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from families.credit_risk import fit as credit_risk
from families.credit_risk import scorecard_answers as scorecard
from families.credit_risk.data import credit_spec, generate_loan_applications
from families.credit_risk.fit import CreditParams
from families.credit_risk.serve import FAMILY as SERVING
from features.spec import LABEL_COLUMN, conform

SPEC = credit_spec()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return conform(generate_loan_applications(2500, seed=5), SPEC)


@pytest.fixture(scope="module")
def card(frame: pd.DataFrame) -> Any:
    return credit_risk.train_scorecard(frame[SPEC.feature_names], frame[LABEL_COLUMN].to_numpy(), SPEC)


def _records(n: int) -> list[dict[str, Any]]:
    df = conform(generate_loan_applications(n, seed=11), SPEC)[SPEC.feature_names]
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in df.to_dict("records")]


def test_scorecard_contributions_add_up_to_the_log_odds_against_the_average_applicant(card: Any) -> None:
    records = _records(200)
    X = pd.DataFrame(records, columns=SPEC.feature_names)
    p = credit_risk.predict_proba(card, X)
    contribs = credit_risk.contributions(card, X)
    assert contribs.shape == (200, len(SPEC.feature_names))
    base = card.named_steps["model"].base_log_odds_
    np.testing.assert_allclose(base + contribs.sum(axis=1), np.log(p / (1 - p)), atol=1e-9)
    # the average applicant (the training means) gets no contribution at all
    model = card.named_steps["model"]
    np.testing.assert_allclose(model.contributions(model.center_[None, :]), 0.0, atol=1e-12)


def test_served_scorecard_answers_equal_the_pipeline_with_the_largest_positive_contributions(card: Any) -> None:
    records = _records(300)
    scorer = scorecard.scorer_from_pipeline(card, threshold=0.15, reason_codes=3)
    answers, scores = scorecard.predict(records, scorer)
    expected = card.predict_proba(pd.DataFrame(records, columns=SPEC.feature_names))[:, 1]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    contribs = credit_risk.contributions(card, pd.DataFrame(records, columns=SPEC.feature_names))
    for i, ans in enumerate(answers):
        assert ans["decision"] == ("decline" if expected[i] >= 0.15 else "approve") and ans["threshold"] == 0.15
        top = sorted(((c, f) for f, c in zip(SPEC.feature_names, contribs[i], strict=True) if c > 0), reverse=True)[:3]
        assert [r["feature"] for r in ans["reason_codes"]] == [f for _, f in top]
        assert all(r["value"] == records[i][r["feature"]] for r in ans["reason_codes"])


def test_cost_threshold_minimises_the_expected_cost_and_approval_policy_hits_its_rate() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=4000)
    y = (rng.uniform(size=4000) < p * 0.6).astype(int)
    params = CreditParams(threshold_policy="cost", cost_ratio=4.0)
    t, text = credit_risk.choose_threshold(y, p, params)
    assert "4 x a wrongly declined" in text

    def cost(th: float) -> float:
        approved = p < th
        return 4.0 * float(y[approved].sum()) + float((1 - y[~approved]).sum())

    grid = np.linspace(0.001, 0.999, 999)
    assert cost(t) <= min(cost(g) for g in grid) + 1e-9
    # calibrated scores: the Bayes threshold is 1 / (1 + cost_ratio) in probability units of y | p
    assert abs(t * 0.6 - 1 / 5) < 0.05
    ta, _ = credit_risk.choose_threshold(y, p, CreditParams(threshold_policy="approval_rate", target_approval_rate=0.7))
    assert abs((p < ta).mean() - 0.7) < 0.01


def test_model_choice_is_the_better_cross_validated_candidate_and_the_threshold_travels_with_it(frame: pd.DataFrame) -> None:
    X, y = frame[SPEC.feature_names].head(1000), frame[LABEL_COLUMN].to_numpy()[:1000]
    params = CreditParams(n_estimators=30, early_stopping_rounds=5, cv_folds=2, seed=5)
    model, sel = credit_risk.select_and_train(X, y, SPEC, params)
    assert set(sel.cv_roc_auc) == {"xgboost", "scorecard"}
    assert sel.chosen == max(sel.cv_roc_auc, key=sel.cv_roc_auc.__getitem__)
    assert credit_risk.model_kind(model) == sel.chosen
    assert credit_risk.decision_threshold(model) == sel.threshold and 0 < sel.threshold < 1
    assert model.selection_["chosen"] == sel.chosen
    metrics = credit_risk.evaluate(model, X, y)
    assert 0 < metrics["approval_rate"] < 1
    forced, only = credit_risk.select_and_train(X, y, SPEC, CreditParams(cv_folds=2, model_choice="scorecard"))
    assert list(only.cv_roc_auc) == ["scorecard"] and credit_risk.model_kind(forced) == "scorecard"


def test_serving_uses_the_models_threshold_unless_the_settings_override_it_per_model(card: Any, tmp_path: Any) -> None:
    from serving.family import ServingContext
    from serving.settings import ServingSettings

    card.decision_threshold_ = 0.123
    keys = {"api_keys": ["k" * 16], "admin_key": "a" * 16}
    ctx = ServingContext("credit-x", "1", ServingSettings(**keys), SPEC, [], tmp_path)  # type: ignore[arg-type]
    built = SERVING.build(card, ctx)
    run, details = built.predictor, built.details
    assert details["threshold"] == 0.123 and details["reason_code_path"] == "scorecard"
    assert run(_records(50)[:2])[0][0]["threshold"] == 0.123
    overridden = ServingSettings(**keys, families={"credit-risk": {"thresholds": {"credit-x": 0.3}}})  # type: ignore[arg-type]
    details = SERVING.build(card, ServingContext("credit-x", "1", overridden, SPEC, [], tmp_path)).details
    assert details["threshold"] == 0.3 and details["threshold_source"] == "serving setting (per model)"
    del card.decision_threshold_
    details = SERVING.build(card, ServingContext("credit-x", "1", ServingSettings(**keys), SPEC, [], tmp_path)).details  # type: ignore[arg-type]
    assert details["threshold"] == 0.2  # a version from before thresholds were recorded
