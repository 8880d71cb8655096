"""The MLflow pyfunc face of a forecast model: ``predict`` takes rows of ``series_id`` (and
optionally ``horizon`` and ``interval``) and answers ``series_id, ds, yhat, yhat_lower, yhat_upper``
from the precomputed table, so ``mlflow models serve`` and ``mlflow.pyfunc.load_model`` work too."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel


class ForecastPyfunc(PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        from pathlib import Path

        from families.spending_forecast.model import ForecastModel

        self.model = ForecastModel.load(Path(context.artifacts["forecast"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frames = []
        for _, row in model_input.iterrows():
            horizon = int(row.get("horizon", self.model.horizon) or self.model.horizon)
            level = float(row.get("interval", 0.8) or 0.8)
            frames.append(self.model.frame(horizon, level, [str(row["series_id"])]))
        if not frames:
            return pd.DataFrame(columns=["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"])
        return pd.concat(frames, ignore_index=True)
