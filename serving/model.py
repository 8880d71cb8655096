"""A served model version and the pure ``predict(records, model)`` handlers call.

The predictor, the request schema and the answer model come from the version's family
plug-in (:mod:`serving.family`); nothing here knows a family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel

from features.labels import LabelCodec, OutcomeCodec
from serving.schema import RecordSchema

Predictor = Callable[..., tuple[list[dict[str, Any]], np.ndarray]]  # (records, explain=True): see serving.family.Predictor


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
    #: live gauges of the model's own machinery (e.g. its profile store), exported on /metrics
    status: Callable[[], dict[str, float]] | None = None
    #: called with (prediction_id, canonical label) after feedback for this model was recorded (e.g. a
    #: categorisation correction becomes a rule at once); the family's ``build`` supplies it in its details
    on_feedback: Callable[[str, str], None] | None = None


def predict(
    records: Sequence[Mapping[str, Any]], model: ServedModel, *, explain: bool = True
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Answers (one dict per record, the family's shape) and the main score per record; ``explain=False``
    leaves the explanations (reason codes, reasons) out."""
    if not explain:
        return model.predictor(records, explain=False)
    return model.predictor(records)
