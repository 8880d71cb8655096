"""Small helpers over the MLflow registry: aliases, version tags, clients."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ledgerline.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

#: The experiment tag MLflow 3's UI reads to choose its view: without it an experiment with
#: no runs yet (or any experiment, since 3.x) may open in the GenAI view ("Traces 0").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
#: The kind the UI shows as model training: the classic runs table, metrics and artifacts.
MODEL_TRAINING_KIND = "custom_model_development"


def client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.resolved_registry_uri())


def ensure_experiment(settings: Settings, name: str, tags: dict[str, str] | None = None) -> str:
    """The id of experiment ``name``, created with ``tags`` when missing; marked as model training either way.

    An experiment created before the kind tag existed gets it on its next use. Safe against a
    concurrent creator (Airflow tasks, a second demo).
    """
    c = client(settings)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        try:
            return str(c.create_experiment(name, tags={**(tags or {}), EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}))
        except MlflowException:  # created meanwhile by a concurrent run
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        c.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return str(exp.experiment_id)


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


#: Headline metrics for a version's description, in reading order (metric key, label).
#: The description line the gate rewrites once it has decided.
GATE_LINE_PREFIX = "**Gate:**"


def version_description(
    *,
    family: str,
    metrics: Mapping[str, float],
    headline: Sequence[str],
    snapshot: str,
    logical_date: str,
    rows: int,
    trigger: str,
    run_id: str,
) -> str:
    """What a data scientist reads first on a version's page: metrics, data, why it was trained, the gate."""
    shown = [f"{key} {metrics[key]:.3f}" for key in headline if key in metrics]
    return "\n\n".join(
        [
            f"**{family}** model. Test metrics on its holdout: {', '.join(shown) or 'none recorded'}.",
            f"**Data:** snapshot of {logical_date}, {rows:,} rows (`{snapshot}`).",
            f"**Why:** trigger `{trigger}`; MLflow run `{run_id}` has the plots, validation report and dataset lineage.",
            f"{GATE_LINE_PREFIX} pending (registered as @{CHALLENGER}).",
        ]
    )


def describe_version(c: MlflowClient, name: str, version: str, description: str) -> None:
    c.update_model_version(name, version, description=description)


def record_gate_in_description(
    c: MlflowClient, name: str, version: str, *, passed: bool, champion_version: str | None, reasons: list[str]
) -> None:
    """Replace the description's gate line with the verdict (appended when the description has none)."""
    if passed:
        verdict = f"PROMOTED to @{CHAMPION}" + (f" (previous champion v{champion_version})" if champion_version else "")
    else:
        verdict = f"rejected; @{CHAMPION} stays " + (f"v{champion_version}" if champion_version else "unset")
    gate_line = f"{GATE_LINE_PREFIX} {verdict}. " + "; ".join(reasons)
    current = c.get_model_version(name, version).description or ""
    paragraphs = [p for p in current.split("\n\n") if p and not p.startswith(GATE_LINE_PREFIX)]
    describe_version(c, name, version, "\n\n".join([*paragraphs, gate_line]))
