"""The ``predictions`` source: this model's production traffic with its feedback, as training rows.

Rows are the model's predictions (online requests and batch jobs alike) made in the window
(``created_at`` in ``[start, end)``) whose feedback arrived before the window's end, so a window
read again later gives the same rows (labels that arrive later belong to a later window's run).
Each prediction's logged inputs become columns; the feedback label (stored in the codec's canonical
form) becomes the spec's target in the data's own terms. What a family makes of them is its
:meth:`training.family.TrainingFamily.production_rows` hook; :func:`default_production_rows` is the
generic answer.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from features.spec import DatasetSpec
    from training.sources.window import Interval

logger = logging.getLogger(__name__)

#: columns of the labelled frame besides the logged inputs
PREDICTION_ID = "__prediction_id__"
PREDICTED_AT = "__predicted_at__"
MODEL_VERSION = "__model_version__"
BATCH_ID = "__batch_id__"
FEEDBACK = "__feedback__"  # the stored label, in the label codec's canonical form
META_COLUMNS = (PREDICTION_ID, PREDICTED_AT, MODEL_VERSION, BATCH_ID, FEEDBACK)


def labelled_predictions(url: str, model_name: str, interval: Interval) -> pd.DataFrame:
    """The model's predictions made in the window with feedback received before its end: one row each, the
    logged inputs as columns plus :data:`META_COLUMNS`, in prediction id order."""
    import pandas as pd
    import sqlalchemy as sa

    from ledgerline import db

    p, f = db.predictions.c, db.feedback.c
    q = (
        sa.select(p.prediction_id, p.created_at, p.model_version, p.batch_id, p.inputs, f.label)
        .select_from(db.predictions.join(db.feedback, f.prediction_id == p.prediction_id))
        .where(
            p.model_name == model_name,
            p.created_at >= interval.start,
            p.created_at < interval.end,
            f.received_at < interval.end,
        )
        .order_by(p.prediction_id)
    )
    with db.engine_for(url).connect() as conn:
        rows = conn.execute(q).all()
    records: list[dict[str, Any]] = []
    for r in rows:
        inputs = r.inputs if isinstance(r.inputs, dict) else json.loads(r.inputs)
        records.append({
            **inputs,
            PREDICTION_ID: r.prediction_id,
            PREDICTED_AT: r.created_at,
            MODEL_VERSION: r.model_version,
            BATCH_ID: r.batch_id,
            FEEDBACK: r.label,
        })
    if not records:
        return pd.DataFrame(columns=list(META_COLUMNS))
    return pd.DataFrame.from_records(records)


def default_production_rows(spec: DatasetSpec, labelled: pd.DataFrame) -> pd.DataFrame:
    """Raw training rows in the spec's columns: its features from the logged inputs (missing: null), its
    target from the feedback (a binary label becomes the data's positive label or its first negative
    label), its id column from the inputs or, when the request had none, the prediction id. Labels the
    codec cannot decode are left out (and logged)."""
    import pandas as pd

    from features.spec import outcome_codec_of

    columns = [*spec.feature_names, *([spec.target] if spec.target else []),
               *([spec.id_column] if spec.id_column else [])]
    if labelled.empty:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(index=labelled.index)
    for name in spec.feature_names:
        out[name] = labelled[name] if name in labelled.columns else None
    keep = pd.Series(True, index=labelled.index)
    if spec.target:
        codec = outcome_codec_of(spec)
        values: list[Any] = []
        for i, stored in labelled[FEEDBACK].items():
            try:
                decoded = codec.decode(str(stored))
            except ValueError:
                keep[i] = False
                values.append(None)
                continue
            if codec.kind == "binary":
                negative = spec.negative_labels[0] if spec.negative_labels else "0"
                decoded = spec.positive_label if decoded == 1 else negative
            values.append(decoded)
        out[spec.target] = values
        dropped = int((~keep).sum())
        if dropped:
            logger.warning("predictions source: %d labels are not in the codec's canonical form (%s); left out",
                           dropped, codec.describe())
    if spec.id_column:
        given = labelled[spec.id_column] if spec.id_column in labelled.columns else None
        out[spec.id_column] = given if given is not None else labelled[PREDICTION_ID]
    return out[keep].reset_index(drop=True)[columns]
