"""Forecasts behind the serving plug-in interface: every answer comes from the registered version's
precomputed forecast table (no model runs at request time), so an answer is a dictionary lookup.

``POST /v1/models/{name}/predict`` takes records ``{series_id, horizon, interval}`` like every
family; ``POST /v1/models/{name}/forecast`` (families/spending_forecast/routes.py) answers one series with
its points and bounds. A series the version does not know is refused (422 here, 404 there)
naming it: a forecast without a backtest has no calibrated interval and no lineage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from serving.errors import InvalidRecords
from serving.family import Built, PredictionBase, Record, ServingContext, ServingFamilyBase, records_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from families.spending_forecast.model import ForecastModel
    from features.labels import OutcomeCodec
    from features.spec import DatasetSpec
    from serving.schema import Column


class ForecastPoint(BaseModel):
    ds: str = Field(description="the period's date (YYYY-MM-DD)")
    yhat: float
    yhat_lower: float
    yhat_upper: float


class ForecastAnswer(PredictionBase):
    series_id: str
    interval: float = Field(description="the interval level of the bounds (0.8 or 0.95)")
    points: list[ForecastPoint]


class ForecastPredictor:
    """The predictor of one loaded version; the forecast route reads :attr:`forecast_model`.

    ``explain`` is accepted like every predictor's (a forecast has no explanations to leave out).
    The score per record is the first point's forecast (kept in the prediction log; the family
    has no score histogram: forecasts of different series share no scale).
    """

    def __init__(self, model: ForecastModel) -> None:
        self.forecast_model = model

    def __call__(self, records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
        import numpy as np

        m = self.forecast_model
        unknown = [str(r["series_id"]) for r in records if not m.knows(str(r["series_id"]))]
        if unknown:
            raise InvalidRecords(
                f"series {unknown[:3]} are not in this model version; forecasts exist for the {len(m.series_ids)} "
                "series it was trained on (retrain with their history to add them)",
                [{"field": "series_id", "message": f"unknown series {unknown[0]!r}", "type": "unknown_series"}],
            )
        answers: list[dict[str, object]] = []
        first = np.zeros(len(records))
        for i, r in enumerate(records):
            horizon = int(_number(r.get("horizon"), m.horizon))
            level = _number(r.get("interval"), 0.8)
            if level not in (0.8, 0.95):
                raise InvalidRecords(f"interval {level} is not offered; use 0.8 or 0.95",
                                     [{"field": "interval", "message": "must be 0.8 or 0.95", "type": "value"}])
            pts = m.points(str(r["series_id"]), horizon, level)
            first[i] = pts[0]["yhat"] if pts else float("nan")
            answers.append({"series_id": str(r["series_id"]), "interval": level, "points": pts})
        return answers, first


def _number(value: object, default: float) -> float:
    """A validated record's optional number (the request schema made it a float or None)."""
    return float(value) if isinstance(value, int | float) and value else float(default)


class SpendingForecastServing(ServingFamilyBase["ForecastModel"]):
    """The model is the version's precomputed forecast table; no score histogram (``score_range`` None);
    feedback is actuals through the family's own route."""

    name = "spending-forecast"
    answer_model = ForecastAnswer
    answer_columns = ("series_id", "interval", "points")
    score_range = None
    scores_rows = False  # a forecast is a table per series and horizon, not an answer per row of a file

    def instead_of_rows(self, model_name: str) -> str:
        return (f"a forecast answers horizons per series: POST /v1/models/{model_name}/forecast "
                "{\"series_id\", \"horizon\", \"interval\"} for one series, or "
                f"`ledgerline forecast {model_name} --horizon H --output FILE` for every series in one file")

    def load(self, model_dir: Path) -> ForecastModel:
        from families.spending_forecast.model import ForecastModel

        return ForecastModel.load(Path(model_dir))

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        from serving.schema import Column

        return [
            Column("series_id", "categorical", False),
            Column("horizon", "numeric", True, 1.0, 1000.0),
            Column("interval", "numeric", True, 0.8, 0.95),
        ]

    def build(self, model: ForecastModel, ctx: ServingContext) -> Built:
        model.knows("")  # build the lookup index before the first request
        details: dict[str, object] = {
            "series": len(model.series_ids),
            "freq": model.freq,
            "horizon": model.horizon,
            "intervals": [0.8, 0.95],
            "chosen_models": {str(k): int(v) for k, v in model.lineage["chosen"].value_counts().items()},
        }
        return Built(ForecastPredictor(model), details)

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        import json

        return {"series_id": answer["series_id"], "interval": answer["interval"],
                "points": json.dumps(answer["points"], separators=(",", ":"))}

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        return None  # the warm-up uses the version's own first series (see build)

    def label_codec(self, spec: DatasetSpec | None) -> OutcomeCodec:
        from features.labels import LabelCodec

        return LabelCodec.canonical_only()  # feedback is actuals per (series, date): POST /v1/models/{name}/actuals

    def score_frame(self, model: ForecastModel, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        import pandas as pd

        answers, _ = ForecastPredictor(model)(records_of(frame))
        return pd.DataFrame([self.flatten(a) for a in answers], index=frame.index, columns=list(self.answer_columns))


FAMILY = SpendingForecastServing()
