"""Small helpers over the MLflow registry: aliases, version tags, clients."""

from __future__ import annotations

import logging

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
