"""A served model version and the pure ``predict(records, model)`` handlers call.

A family plugs in with one builder here: it turns the logged model object into a
predictor ``records -> (answers, scores)``; the request schema comes from the
signature and the training spec (:mod:`serving.schema`) for every family alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from features.labels import LabelCodec
from serving.schema import RecordSchema
from serving.settings import ServingSettings

Predictor = Callable[[Sequence[Mapping[str, Any]]], tuple[list[dict[str, Any]], np.ndarray]]


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str
    family: str
    schema: RecordSchema
    predictor: Predictor
    loaded_at: datetime
    run_id: str | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    #: what the model's outcomes are called (from its training spec); feedback is accepted and stored through it
    label_codec: LabelCodec = field(default_factory=LabelCodec.canonical_only)


def predict(records: Sequence[Mapping[str, Any]], model: ServedModel) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Answers (one dict per record, the family's shape) and the main score per record."""
    return model.predictor(records)


def _credit_predictor(
    pipeline: Any, name: str, settings: ServingSettings, schema: RecordSchema
) -> tuple[Predictor, dict[str, Any]]:
    from serving import credit
    from serving.treeshap import TreeShapTable

    scorer = credit.scorer_from_pipeline(
        pipeline,
        threshold=settings.threshold_for(name),
        reason_codes=settings.reason_codes,
        approximate=settings.reason_code_method == "approximate",
        nthread=settings.predict_threads,
        nullable=frozenset(c.name for c in schema.columns if c.nullable),
    )

    def run(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray]:
        return credit.predict(records, scorer)

    details = {
        "threshold": scorer.threshold,
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
    return run, details


#: family name -> builder(pipeline, model name, settings, request schema) -> (predictor, details)
FAMILIES: dict[str, Callable[[Any, str, ServingSettings, RecordSchema], tuple[Predictor, dict[str, Any]]]] = {
    "credit-risk": _credit_predictor,
}


def build_predictor(
    family: str, pipeline: Any, name: str, settings: ServingSettings, schema: RecordSchema
) -> tuple[Predictor, dict[str, Any]]:
    try:
        builder = FAMILIES[family]
    except KeyError:
        raise ValueError(f"model family '{family}' has no serving schema yet; served families: {sorted(FAMILIES)}") from None
    return builder(pipeline, name, settings, schema)
