"""A served model version and the pure ``predict(records, model)`` handlers call.

The predictor, the request schema and the answer model come from the version's family
plug-in (:mod:`serving.family`); nothing here knows a family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel

from features.labels import LabelCodec, OutcomeCodec
from serving.family import UNIT_RANGE, OnFeedback, Predictor, ScoreRange, Status
from serving.schema import RecordSchema


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
    label_codec: OutcomeCodec = field(default_factory=LabelCodec.canonical_only)
    #: the family's answer model (OpenAPI) and how an answer becomes flat file columns
    answer_model: type[BaseModel] | None = None
    #: the scale of the monitored score (the family's): the score histograms are bucketed over it; None: no score
    score_range: ScoreRange = UNIT_RANGE
    #: live gauges of the model's own machinery (e.g. its profile store), exported on /metrics
    status: Status | None = None
    #: called with (prediction_id, canonical label) after feedback for this model was recorded (e.g. a
    #: categorisation correction becomes a rule at once); the family's ``build`` supplies it
    on_feedback: OnFeedback | None = None


def predict(
    records: Sequence[Mapping[str, Any]], model: ServedModel, *, explain: bool = True
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Answers (one dict per record, the family's shape) and the main score per record; ``explain=False``
    leaves the explanations (reason codes, reasons) out."""
    answers, scores = model.predictor(records, explain=explain)
    return answers, scores
