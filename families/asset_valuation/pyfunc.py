"""The MLflow pyfunc face of an asset-valuation model, and its loader.

``mlflow.pyfunc.load_model(uri).predict(frame)`` answers a DataFrame with ``prediction``,
``prediction_lower`` and ``prediction_upper`` (the interval at the version's level, or at
``params={"interval": 0.9}``), so ``mlflow models serve`` works too. The fitted
:class:`~families.asset_valuation.model.AssetValuationModel` travels inside the python model
(cloudpickle, with ``features/`` and this folder as code paths); :func:`load_asset_model` takes
it back out for the platform's own loaders (training's gate, serving, monitoring).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from families.asset_valuation.model import INTERVAL_FIELD, AssetValuationModel
from ledgerline.errors import RegistryError

ANSWER_COLUMNS = ("prediction", "prediction_lower", "prediction_upper")


class AssetValuationPyfunc(PythonModel):  # type: ignore[misc]
    """Holds the fitted model; ``predict`` gives the value and its interval per row."""

    def __init__(self, model: AssetValuationModel) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """The value and interval per row: at the row's ``interval`` when given, else at ``params["interval"]``,
        else at the version's level."""
        import numpy as np

        given = (params or {}).get(INTERVAL_FIELD)
        default = self.model.level if given is None else float(given)
        if INTERVAL_FIELD in model_input.columns:
            levels = pd.to_numeric(model_input[INTERVAL_FIELD], errors="coerce").fillna(default).to_numpy(dtype=float)
        else:
            levels = np.full(len(model_input), default)
        out = pd.DataFrame(index=model_input.index, columns=list(ANSWER_COLUMNS), dtype=float)
        for level in np.unique(levels):
            rows = levels == level
            pred, lower, upper = self.model.predict_interval(model_input.loc[rows], float(level))
            out.loc[rows, "prediction"], out.loc[rows, "prediction_lower"], out.loc[rows, "prediction_upper"] = pred, lower, upper
        return out


def load_asset_model(source: str | Path) -> AssetValuationModel:
    """The fitted model of a logged version (a model URI or a local MLflow model folder)."""
    import mlflow.pyfunc

    from features.model_io import prepare_model_imports

    prepare_model_imports()
    saved = list(sys.path)
    try:
        wrapped = mlflow.pyfunc.load_model(str(source)).unwrap_python_model()
    finally:
        sys.path[:] = saved
    model = getattr(wrapped, "model", None)
    if not isinstance(model, AssetValuationModel):
        raise RegistryError(
            f"the model at {source} is not an asset-valuation model (it holds a {type(model).__name__}); "
            "it was logged by another model family: check the version's family tag"
        )
    return model


__all__ = ["ANSWER_COLUMNS", "INTERVAL_FIELD", "AssetValuationPyfunc", "load_asset_model"]
