"""The serving plug-in contract: every hook declared on ServingFamily, every predictor takes ``explain``,
score histograms bucketed over each family's score range, feedback labels handed to the codec as sent."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def test_every_registered_family_implements_the_whole_serving_protocol():
    from ledgerline.families import FAMILIES
    from serving.family import ServingFamily, get_serving_family

    for name in FAMILIES:
        family = get_serving_family(name)
        assert isinstance(family, ServingFamily)
        assert family.name == name
        assert family.score_column is None or family.score_column in family.answer_columns, name
        if family.score_range is not None:
            lo, hi = family.score_range
            assert lo < hi, name
        else:
            assert family.score_column is None, f"{name}: a family without a score range has no score column"


class _Series:
    """A forecast model's surface the predictor reads."""

    series_ids = ("a",)
    horizon = 3

    def knows(self, series_id: str) -> bool:
        return series_id == "a"

    def points(self, series_id: str, horizon: int, level: float) -> list[dict[str, object]]:
        return [{"ds": f"2026-0{i + 1}-01", "yhat": 10.0 + i, "yhat_lower": 9.0, "yhat_upper": 12.0} for i in range(horizon)]


def test_a_forecast_predictor_takes_explain_like_every_predictor():
    from families.spending_forecast.serve import ForecastPredictor
    from serving.model import ServedModel, predict
    from serving.schema import Column, RecordSchema

    predictor = ForecastPredictor(_Series())  # type: ignore[arg-type]
    model = ServedModel("f", "1", "spending-forecast", RecordSchema("f", [Column("series_id", "categorical", False)], 10),
                        predictor, loaded_at=None)  # type: ignore[arg-type]
    for explain in (True, False):  # ?explain=false answered 500 before the keyword was part of the contract
        answers, scores = predict([{"series_id": "a", "horizon": 2.0, "interval": None}], model, explain=explain)
        assert len(answers[0]["points"]) == 2 and answers[0]["interval"] == 0.8 and scores.tolist() == [10.0]


def test_score_histograms_are_bucketed_over_each_models_score_range():
    from serving.metrics import SCORE_BUCKETS, ServingMetrics, score_buckets

    metrics = ServingMetrics()
    metrics.observed("pd", "1", 0.01, np.array([0.05, 0.5]))  # the default range: [0, 1]
    metrics.observed("price", "2", 0.01, np.array([120_000.0, 480_000.0, 2e6]), (0.0, 1e6))
    metrics.observed("forecast", "3", 0.01, np.array([12.0]), None)  # no score: no histogram
    text = metrics.render().decode()
    assert 'ledgerline_serving_prediction_score_bucket{le="0.5",model="pd",version="1"} 2.0' in text
    assert 'ledgerline_serving_prediction_score_bucket{le="500000.0",model="price",version="2"} 2.0' in text
    assert 'ledgerline_serving_prediction_score_count{model="price",version="2"} 3.0' in text
    assert 'model="forecast"' not in text.split("ledgerline_serving_prediction_score")[-1]
    assert "ledgerline_serving_prediction_score_count{model=\"forecast\"" not in text
    assert score_buckets((0.0, 1.0)) == SCORE_BUCKETS and score_buckets((0.0, 1e6))[-1] == 1e6
    with pytest.raises(ValueError, match="must rise"):
        score_buckets((1.0, 1.0))


class _RecordingCodec:
    """A codec that takes any number (as a regression target's would) and records what it was handed."""

    target = "price"
    allowed_values = ()

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def describe(self) -> str:
        return "a number"

    def accept(self, value: object) -> str:
        from features.labels import LabelError

        self.seen.append(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LabelError(f"label {value!r} must be a number", ())
        return repr(float(value))


@pytest.mark.parametrize(("body", "sent"), [("123456.5", 123456.5), ("7", 7), ("0.25", 0.25)])
def test_a_numeric_feedback_label_reaches_the_codec_unchanged(body: str, sent: object):
    from serving.routes.feedback import FeedbackRequest, _normalise_label

    req = FeedbackRequest.model_validate_json('{"prediction_id": "p-1", "label": ' + body + "}")
    codec = _RecordingCodec()
    assert _normalise_label(codec, req.label) == repr(float(sent))  # type: ignore[arg-type]
    assert codec.seen == [sent] and type(codec.seen[0]) is type(sent)


def test_feedback_labels_the_binary_codec_refuses_are_a_422_not_a_crash():
    from features.labels import LabelCodec
    from serving.errors import InvalidRecords
    from serving.routes.feedback import FeedbackRequest, _normalise_label

    codec = LabelCodec.canonical_only()
    for body in ('"1"', "1", "0"):
        assert _normalise_label(codec, FeedbackRequest.model_validate_json(f'{{"prediction_id": "p", "label": {body}}}').label) in ("0", "1")
    for body in ("1.5", "true"):
        label = FeedbackRequest.model_validate_json(f'{{"prediction_id": "p", "label": {body}}}').label
        with pytest.raises(InvalidRecords, match="must be"):
            _normalise_label(codec, label)
