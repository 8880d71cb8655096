"""Small helpers over the MLflow registry: aliases, version tags, clients."""

from __future__ import annotations

import logging
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ledgerline.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.resolved_registry_uri())


def alias_version(c: MlflowClient, name: str, alias: str) -> str | None:
    """The version behind ``name@alias``, or None when the model or alias does not exist."""
    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def set_version_tags(c: MlflowClient, name: str, version: str, tags: dict[str, object]) -> None:
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, str(value)[:5000])


def load_sklearn_model(model_uri: str) -> Any:
    """``mlflow.sklearn.load_model`` without leaving the model's code folder on ``sys.path``.

    Our ``features`` package is imported first, so the copy logged with the model
    (``code_paths``) never shadows it; long-lived processes (Airflow workers, serving)
    would otherwise collect one temporary folder per load.
    """
    import sys

    import mlflow.sklearn

    import features.transform  # noqa: F401

    saved = list(sys.path)
    try:
        return mlflow.sklearn.load_model(model_uri)
    finally:
        sys.path[:] = saved
