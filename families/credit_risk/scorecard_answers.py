"""Credit-risk answers of a scorecard model (:class:`families.credit_risk.model.ScorecardModel`).

The same JSON-records fast path as :mod:`families.credit_risk.answers` (the model's own
``TabularFeatures.transform_records``), then one matrix product: the log-odds are
``base + sum_j coef_j * (z_j - mean_z_j)``; each input field's reason-code contribution is its
columns' terms summed, i.e. what the field adds to the log-odds against the average applicant.
The answers are built by :func:`families.credit_risk.answers.answers`, so both model kinds answer alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from families.credit_risk import answers as credit
from families.credit_risk.model import ScorecardModel
from features.transform import TabularFeatures


@dataclass(frozen=True)
class ScorecardScorer:
    """What one scorecard version needs to answer (the fields :func:`families.credit_risk.answers.answers` reads)."""

    features: TabularFeatures
    model: ScorecardModel
    threshold: float
    reason_codes: int = 3

    @property
    def input_names(self) -> list[str]:
        return list(self.features.input_features_)


def is_scorecard(pipeline: Any) -> bool:
    steps = getattr(pipeline, "named_steps", None)
    return steps is not None and isinstance(steps.get("model"), ScorecardModel)


def scorer_from_pipeline(pipeline: Any, *, threshold: float, reason_codes: int = 3) -> ScorecardScorer:
    steps = pipeline.named_steps
    features = steps["features"]
    if not hasattr(features, "transform_records"):
        raise ValueError("the 'features' step is not a fitted TabularFeatures")
    return ScorecardScorer(features, steps["model"], threshold, reason_codes)


def score(records: Sequence[Mapping[str, Any]], scorer: ScorecardScorer, *, explain: bool = True) -> credit.CreditScores:
    X = scorer.features.transform_records(records)
    terms = scorer.model.contributions(X)  # (n, n_columns) against the average applicant
    logit = terms.sum(axis=1) + scorer.model.base_log_odds_
    proba = 1.0 / (1.0 + np.exp(-logit))
    contribs = scorer.features.aggregate_contributions(terms) if explain and scorer.reason_codes > 0 else None
    return credit.CreditScores(proba, contribs)


def predict(
    records: Sequence[Mapping[str, Any]], scorer: ScorecardScorer, *, explain: bool = True
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Answers and scores; ``explain=False``: no reason codes (an empty list in each answer)."""
    s = score(records, scorer, explain=explain)
    return credit.answers(records, s, scorer), s.probabilities
