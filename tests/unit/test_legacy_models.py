"""Versions registered before families had folders still load and answer.

The fixtures are MLflow model folders logged with the old layout (``features.scorecard``,
``features.forecast_model``, ... as the classes' modules, ``code/features`` inside), made with
the family plug-ins as they were just before the move (commit d60befc); the loaders resolve the old paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_models"


def _inputs(name: str) -> pd.DataFrame:
    frame = pd.read_csv(FIXTURES / f"{name}.input.csv")
    return frame.drop(columns=["default", "__label__", "application_id"], errors="ignore")


@pytest.mark.parametrize("name", ["credit-risk-xgboost", "credit-risk-scorecard"])
def test_a_credit_model_logged_with_the_old_layout_loads_and_scores(name):
    from features.model_io import load_model

    model = load_model(FIXTURES / name)
    proba = np.asarray(model.predict_proba(_inputs(name)))
    assert proba.shape == (20, 2)
    assert np.all((proba >= 0) & (proba <= 1))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert type(model).__module__.startswith(("families.credit_risk.", "sklearn.", "xgboost."))


def test_the_old_scorecard_class_is_todays_class():
    from families.credit_risk.model import ScorecardModel
    from features.model_io import load_model

    model = load_model(FIXTURES / "credit-risk-scorecard")
    inner = model.steps[-1][1] if hasattr(model, "steps") else model
    assert isinstance(inner, ScorecardModel)


def test_the_credit_serving_plugin_answers_with_a_model_logged_before_the_move():
    from ledgerline.families import load_plugin
    from serving.family import ServingFamily

    serving = load_plugin("serving", "credit-risk", ServingFamily)  # type: ignore[type-abstract]
    model = serving.load(FIXTURES / "credit-risk-xgboost")
    assert np.asarray(model.predict_proba(_inputs("credit-risk-xgboost"))).shape == (20, 2)


def test_a_forecast_logged_with_the_old_layout_loads_through_plain_mlflow_and_the_family():
    import mlflow.pyfunc

    from ledgerline.families import install_legacy_aliases
    from training.family import get_family

    install_legacy_aliases()
    series = pd.read_csv(FIXTURES / "spending-forecast.input.csv")["series_id"].astype(str).unique()[:2]
    answer = mlflow.pyfunc.load_model(str(FIXTURES / "spending-forecast")).predict(
        pd.DataFrame({"series_id": series, "horizon": [3.0] * len(series), "interval": [0.8] * len(series)})
    )
    assert list(answer.columns) == ["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
    assert len(answer) == 3 * len(series)
    assert (answer["yhat_lower"] <= answer["yhat"]).all() and (answer["yhat"] <= answer["yhat_upper"]).all()
    model = get_family("spending-forecast").load_model(str(FIXTURES / "spending-forecast"))
    assert int(model.horizon) >= 3
