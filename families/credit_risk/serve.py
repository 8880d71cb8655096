"""Credit-risk answers behind the serving plug-in interface: probability of default, the decision at
the model's threshold and the top reason codes (:mod:`families.credit_risk.answers` has the XGBoost fast path,
:mod:`families.credit_risk.scorecard_answers` the scorecard's).

The decision threshold is the one chosen at training and recorded with the version
(``decision_threshold_`` on the model); ``LEDGERLINE_CREDIT_RISK_THRESHOLDS`` overrides it per model;
``LEDGERLINE_CREDIT_RISK_DECISION_THRESHOLD`` applies only to versions trained before thresholds were
recorded."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from families.credit_risk.settings import CreditRiskSettings
from serving.family import Built, PredictionBase, Record, ServingContext, ServingFamilyBase

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from families.credit_risk import answers as credit
    from features.spec import DatasetSpec
    from serving.schema import Column


class ReasonCode(BaseModel):
    feature: str
    value: float | str | bool | None
    contribution: float = Field(
        description="log-odds added to the risk by this field (XGBoost: TreeSHAP; scorecard: coefficient x "
        "deviation from the average applicant)"
    )


class CreditPrediction(PredictionBase):
    probability_of_default: float
    decision: Literal["approve", "decline"]
    threshold: float
    reason_codes: list[ReasonCode] = Field(description="fields that pushed the risk up most, largest first")


class CreditRiskServing(ServingFamilyBase["Pipeline"]):
    """The model is the logged pipeline (``features`` then ``model``: XGBoost or a scorecard); the score is the
    probability of default, in [0, 1]; feedback is the outcome in the training data's labels (or 1/0)."""

    name = "credit-risk"
    answer_model = CreditPrediction
    answer_columns = ("probability_of_default", "decision", "reason_codes")

    def build(self, model: Pipeline, ctx: ServingContext) -> Built:
        from families.credit_risk import answers as credit
        from serving.treeshap import TreeShapTable

        settings = ctx.settings
        own = CreditRiskSettings.of(settings.families)
        recorded = getattr(model, "decision_threshold_", None)
        threshold = _threshold(model, ctx)
        source = (
            "serving setting (per model)" if ctx.model_name in own.thresholds
            else "the model (chosen at training)" if recorded is not None
            else "serving setting (default)"
        )
        selection = getattr(model, "selection_", None) or {}
        from families.credit_risk import scorecard_answers as scorecard

        if scorecard.is_scorecard(model):
            card = scorecard.scorer_from_pipeline(model, threshold=threshold, reason_codes=settings.reason_codes)

            def run_card(records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
                return scorecard.predict(records, card, explain=explain)

            return Built(run_card, {
                "model_kind": "scorecard",
                "threshold": threshold,
                "threshold_source": source,
                "threshold_policy": selection.get("policy_text"),
                "reason_codes": card.reason_codes,
                "reason_code_method": "exact",
                "reason_code_path": "scorecard",
                "inputs": card.input_names,
            })
        scorer = self._xgboost_scorer(model, ctx, threshold)

        def run(records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
            return credit.predict(records, scorer, explain=explain)

        details: dict[str, object] = {
            "model_kind": "xgboost",
            "threshold": scorer.threshold,
            "threshold_source": source,
            "threshold_policy": selection.get("policy_text"),
            "reason_codes": scorer.reason_codes,
            "reason_code_method": "approximate" if scorer.approximate else "exact",
            "treeshap_table_cells": scorer.shap_table.cells if scorer.shap_table is not None else None,
            "reason_code_path": (
                "approx_contribs" if scorer.approximate
                else "pred_contribs" if scorer.shap_table is None
                else "treeshap_cells" if isinstance(scorer.shap_table, TreeShapTable)
                else "treeshap_leaves"
            ),
            "trees": int(scorer.booster.num_boosted_rounds()),
            "inputs": scorer.input_names,
        }
        return Built(run, details)

    def _xgboost_scorer(self, model: Pipeline, ctx: ServingContext, threshold: float) -> credit.CreditScorer:
        from families.credit_risk import answers as credit

        settings = ctx.settings
        return credit.scorer_from_pipeline(
            model,
            threshold=threshold,
            reason_codes=settings.reason_codes,
            approximate=CreditRiskSettings.of(settings.families).reason_code_method == "approximate",
            nthread=settings.predict_threads,
            nullable=frozenset(c.name for c in ctx.columns if c.nullable),
        )

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        reasons = answer.get("reason_codes") or []
        return {
            "probability_of_default": answer["probability_of_default"],
            "decision": answer["decision"],
            "reason_codes": json.dumps(reasons, separators=(",", ":")) if reasons else "",
        }

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        return None  # the logged input example is a real applicant

    def score_frame(self, model: Pipeline, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        """The serving answers for a frame's rows, column by column: the same numbers and text as the API's
        answers flattened (:meth:`flatten`), without a Python dict per row (a scorecard goes through its records)."""
        import pandas as pd

        from families.credit_risk import answers as credit
        from families.credit_risk import scorecard_answers as scorecard

        if scorecard.is_scorecard(model):  # through its records, as online
            return super().score_frame(model, frame, ctx)
        cache = ctx.cache()
        explain = bool(ctx.options.get("explain", True))
        scorer = cache.get("credit_scorer")
        if not isinstance(scorer, credit.CreditScorer):  # the TreeSHAP tables are built once per run
            scorer = cache["credit_scorer"] = self._xgboost_scorer(model, ctx, _threshold(model, ctx))
        s = credit.score_matrix(scorer.features.transform(frame), scorer, explain=explain)
        columns = {name: frame[name].to_numpy() for name in scorer.features.input_features_}
        return pd.DataFrame(
            {"probability_of_default": s.probabilities, "decision": credit.decisions_at(s.probabilities, scorer.threshold),
             "reason_codes": credit.flat_reason_codes(columns, s, scorer)},
            index=frame.index, columns=list(self.answer_columns),
        )


def _threshold(model: Pipeline, ctx: ServingContext) -> float:
    """The decision threshold: a per-model serving setting, else the one recorded at training, else the default."""
    recorded = getattr(model, "decision_threshold_", None)
    own = CreditRiskSettings.of(ctx.settings.families)
    return own.threshold_for(ctx.model_name, None if recorded is None else float(recorded))


FAMILY = CreditRiskServing()
