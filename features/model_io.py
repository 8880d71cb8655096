"""The one loader of logged models, for every family and every layer (training's gate,
monitoring, serving): ``mlflow.sklearn.load_model`` on a ``models:/`` or ``runs:/`` URI or
a downloaded model folder.

Our own classes travel inside the models (``code_paths=[features]``); our ``features``
package is imported first, so the logged copy never shadows it, and ``sys.path`` is
restored after the load, so long-lived processes (Airflow workers, serving) do not
collect one temporary folder per load.
"""

from __future__ import annotations

import sys
from pathlib import Path


def load_model(source: str | Path) -> object:
    """The model object logged at ``source`` (a model URI or a local MLflow model folder)."""
    import mlflow.sklearn

    import features.category_model  # noqa: F401  - ours first: the model's copies are never imported
    import features.detector  # noqa: F401
    import features.transform  # noqa: F401

    saved = list(sys.path)
    try:
        return mlflow.sklearn.load_model(str(source))
    finally:
        sys.path[:] = saved
