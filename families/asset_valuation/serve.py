"""Asset-valuation answers behind the serving plug-in interface: the value, its interval and the reasons.

An answer holds ``prediction`` (for a log model: the median value), ``prediction_lower`` and
``prediction_upper`` (the split-conformal interval), ``interval`` (its level) and ``reasons`` (the
inputs with the largest TreeSHAP contributions, in the target's units). A request asks for another
level with the field ``interval`` (0.5 to 0.99, or null) in each record; with null the level is the
one given to offline scoring (``ledgerline score --interval``, ``ServingContext.options["interval"]``)
or else the version's own (0.8 by default).

Records go straight to a numpy matrix (no pandas on the request path) and XGBoost's
``inplace_predict``; reasons come from ``pred_contribs`` (skipped with ``?explain=false``).
The monitored score is the prediction (no score histogram: values share no scale); feedback is the
realised value (:class:`~features.labels.NumericCodec`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from families.asset_valuation.model import INTERVAL_FIELD
from families.asset_valuation.settings import AssetValuationSettings
from serving.errors import InvalidRecords
from serving.family import Built, PredictionBase, Record, ServingContext, ServingFamilyBase

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from families.asset_valuation.model import AssetValuationModel
    from features.labels import OutcomeCodec
    from features.spec import DatasetSpec
    from serving.schema import Column

#: the levels the request field ``interval`` takes
LEVELS = (0.5, 0.99)


class Reason(BaseModel):
    feature: str
    value: float | str | bool | None
    contribution: float = Field(description="what this input added to the prediction, in the target's units (TreeSHAP)")


class AssetValuation(PredictionBase):
    prediction: float = Field(description="the estimated value (a log model's median)")
    prediction_lower: float = Field(description="the interval's lower bound")
    prediction_upper: float = Field(description="the interval's upper bound")
    interval: float = Field(description="the interval's level (the share of realised values it should hold)")
    reasons: list[Reason] = Field(description="inputs that moved the estimate most, largest first (empty with ?explain=false)")


def check_level(value: object, where: str) -> float:
    """An interval level from a request or an option; InvalidRecords naming the allowed range."""
    lo, hi = LEVELS
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= float(value) <= hi:
        raise InvalidRecords(
            f"{where} {value!r} is not an interval level; give a number from {lo} to {hi} (e.g. 0.8 or 0.9)",
            [{"field": INTERVAL_FIELD, "message": f"must be a number from {lo} to {hi}", "type": "value"}],
        )
    return float(value)


class ShapTables:
    """Exact TreeSHAP contributions of each booster from per-leaf tables (:mod:`serving.treeshap`), built once per
    loaded version: a row's reasons cost a table lookup instead of XGBoost's ``pred_contribs`` (about 0.5 ms
    against 20 ms for one row). A booster the tables cannot hold (too large, or disagreeing with
    ``pred_contribs`` on a probe) falls back to ``pred_contribs``."""

    def __init__(self, model: AssetValuationModel) -> None:
        self.model = model
        self.tables: dict[str, object] = {}
        boosters = {"": model.pooled, **model.segment_models}
        for route, booster in boosters.items():
            table = _table(model, booster)
            if table is not None:
                self.tables[route] = table

    def __call__(self, route: str, booster: object, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        table = self.tables.get(route)
        if table is None:
            return self.model.booster_contributions(route, booster, X)
        contribs, margin, _ = table.lookup(X)  # type: ignore[attr-defined]
        return contribs, margin - contribs.sum(axis=1)


def _table(model: AssetValuationModel, booster: object) -> object | None:
    """The per-leaf table of one regression booster, checked against ``pred_contribs`` on probe rows; None when
    it cannot be built (logged)."""
    import json as _json
    import logging

    import numpy as np

    from serving.treeshap.leaves import LeafShapTable, NotTabulable

    log = logging.getLogger(__name__)
    try:
        raw = _json.loads(bytes(booster.save_raw(raw_format="json")))  # type: ignore[attr-defined]
        learner = raw["learner"]
        base = float(str(learner["learner_model_param"]["base_score"]).strip("[]").split(",")[0])
        trees = learner["gradient_booster"]["model"]["trees"]
        mapping = model.input_map()
        table = LeafShapTable.from_trees(trees, mapping.shape[0], mapping, base)
    except (NotTabulable, KeyError, ValueError) as exc:
        log.warning("TreeSHAP tables not used for %s: %s; reasons come from pred_contribs (slower)", model, exc)
        return None
    rng = np.random.default_rng(0)
    probe = rng.normal(0.0, 1.0, (16, mapping.shape[0])).astype(np.float32) * rng.choice([1.0, 10.0, 1000.0], (16, 1))
    probe[rng.random(probe.shape) < 0.2] = np.nan
    want, bias = model.booster_contributions("", booster, probe)
    got, margin, _ = table.lookup(probe)
    if not (np.allclose(got, want, atol=1e-3) and np.allclose(margin - got.sum(axis=1), bias, atol=1e-3)):
        log.warning("TreeSHAP tables of %s disagree with pred_contribs; reasons come from pred_contribs", model)
        return None
    return table


class AssetPredictor:
    """The predictor of one loaded version (records -> answers and predictions)."""

    def __init__(self, model: AssetValuationModel, *, level: float, reasons: int) -> None:
        self.model = model
        self.level = level
        self.top = reasons
        self.inputs = model.input_columns
        self.shap = ShapTables(model) if reasons > 0 else None
        self.window = _year_window(model)

    def __call__(self, records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
        import numpy as np

        from ledgerline.errors import DataError

        m = self.model
        try:
            X = m.matrix_records(records)
        except DataError as exc:
            column = m.time_column or ""
            raise InvalidRecords(str(exc), [{"field": column, "message": str(exc), "type": "value"}]) from None
        if m.time_column:
            self._check_dates(X, records)
        segments = m.segments_of_records(records)
        routes = m.routes_of(segments)
        phi: np.ndarray | None = None
        if explain and self.top > 0 and len(records):
            # the contributions sum to the prediction (base + contributions): no second pass over the trees
            phi, base = m.contributions_of(X, routes, self.shap)
            value = base + phi.sum(axis=1)
            margin = np.log(np.maximum(value, np.finfo(np.float64).tiny)) if m.log_target else value
        else:
            margin = m.margin_of(X, routes)
        asked = [r.get(INTERVAL_FIELD) for r in records]
        levels = np.array([self.level if a is None else check_level(a, "interval") for a in asked], dtype=np.float64)
        pred = np.empty(len(records))
        lower = np.empty(len(records))
        upper = np.empty(len(records))
        for level in np.unique(levels):
            rows = levels == level
            pred[rows], lower[rows], upper[rows] = m.interval_of(margin[rows], segments[rows], float(level))
        reasons: list[list[dict[str, object]]] = [[] for _ in records]
        if phi is not None:
            order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, : self.top]
            for i, rec in enumerate(records):
                reasons[i] = [
                    {"feature": self.inputs[j], "value": rec.get(self.inputs[j]), "contribution": round(float(phi[i, j]), 4)}
                    for j in order[i]
                ]
        answers: list[dict[str, object]] = [
            {"prediction": float(pred[i]), "prediction_lower": float(lower[i]), "prediction_upper": float(upper[i]),
             "interval": float(levels[i]), "reasons": reasons[i]}
            for i in range(len(records))
        ]
        return answers, pred

    def _check_dates(self, X: np.ndarray, records: Sequence[Record]) -> None:
        """Dates from 1900 to 2100 only: the trend is continued from the training dates, so a date centuries
        away is a typo that would give an absurd value (the family's expectations hold training data to the same)."""
        import numpy as np

        from families.asset_valuation.expectations import YEARS

        lo, hi = self.window
        years = X[:, -2]
        bad = np.flatnonzero(~np.isnan(years) & ((years < lo) | (years > hi)))
        if len(bad):
            column = str(self.model.time_column)
            value = records[int(bad[0])].get(column)
            raise InvalidRecords(
                f"'{column}' {value!r} is outside {YEARS[0]}-{YEARS[1]}; give the sale date (ISO 8601), or null when unknown",
                [{"field": column, "message": f"must be a date from {YEARS[0]} to {YEARS[1]}", "type": "value"}],
            )


def _year_window(model: AssetValuationModel) -> tuple[float, float]:
    """The allowed dates as years since the model's origin (see ``AssetPredictor._check_dates``)."""
    import pandas as pd

    from families.asset_valuation.expectations import YEARS
    from families.asset_valuation.model import DAYS_PER_YEAR

    if model.origin is None:
        return float("-inf"), float("inf")
    origin = pd.Timestamp(model.origin)
    return tuple(  # type: ignore[return-value]
        (pd.Timestamp(day) - origin).total_seconds() / 86_400 / DAYS_PER_YEAR
        for day in (f"{YEARS[0]}-01-01", f"{YEARS[1]}-12-31")
    )


class AssetValuationServing(ServingFamilyBase["AssetValuationModel"]):
    """The model comes out of the logged pyfunc; the predictor's score is the prediction (no [0, 1] scale, so no
    score histogram); feedback is the realised value."""

    name = "asset-valuation"
    answer_model = AssetValuation
    answer_columns = ("prediction", "prediction_lower", "prediction_upper", "interval_level", "reasons")
    score_range = None  # values share no scale: no score histogram, and batch jobs log no score column (the
    # prediction log keeps the answers, whose prediction monitoring reads)

    def load(self, model_dir: Path) -> AssetValuationModel:
        from families.asset_valuation.pyfunc import load_asset_model

        return load_asset_model(model_dir)

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        from serving.schema import Column, columns_from

        columns = [c for c in columns_from(signature_inputs, spec) if c.name != INTERVAL_FIELD]
        return [*columns, Column(INTERVAL_FIELD, "numeric", True, LEVELS[0], LEVELS[1])]

    def build(self, model: AssetValuationModel, ctx: ServingContext) -> Built:
        own = AssetValuationSettings.of(ctx.settings.families)
        option = ctx.options.get(INTERVAL_FIELD)
        level = model.level if option is None else check_level(option, "--interval")
        details: dict[str, object] = {
            "interval": level,
            "interval_levels": list(LEVELS),
            "log_target": model.log_target,
            "trend_per_year": model.trend_per_year,
            "time_column": model.time_column,
            "segment_column": model.segment_column,
            "segment_models": sorted(model.segment_models),
            "reasons": own.reasons,
            "inputs": model.input_columns,
        }
        return Built(AssetPredictor(model, level=level, reasons=own.reasons), details)

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        reasons = answer.get("reasons") or []
        return {
            "prediction": answer["prediction"],
            "prediction_lower": answer["prediction_lower"],
            "prediction_upper": answer["prediction_upper"],
            "interval_level": answer["interval"],
            "reasons": json.dumps(reasons, separators=(",", ":")) if reasons else "",
        }

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        return None  # the logged input example is a real sale

    def label_codec(self, spec: DatasetSpec | None) -> OutcomeCodec:
        from features.labels import NumericCodec

        target = spec.target if spec is not None and spec.target else "value"
        return NumericCodec(target)


FAMILY = AssetValuationServing()
