"""The train-and-register step: train in the validated run, log metrics, report, card parts and the
model, register it and point ``@challenger`` at it; and the check that skips training when the
champion came from the same snapshot, spec and parameters."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.spec import DatasetSpec
from ledgerline import lineage
from ledgerline.errors import LedgerlineError
from ledgerline.families import FAMILY_TAG
from ledgerline.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    client,
    describe_version,
    set_version_tags,
    version_description,
)
from ledgerline.settings import Settings
from training import cards
from training.family import FamilyParams, FittedModel, get_family
from training.gate import GateDecision
from training.inputs import Prepared, TrainRequest, load_yaml
from training.runs import Progress, configure_mlflow, fail_if_running, log_progress, resumed, step, unregister

logger = logging.getLogger(__name__)

Fit = Callable[[pd.DataFrame, DatasetSpec, FamilyParams], FittedModel]


@dataclass
class TrainingResult:
    model_name: str
    snapshot_uri: str
    run_id: str
    version: str
    metrics: dict[str, float]
    decision: GateDecision
    champion: str | None
    experiment_id: str
    artifacts: list[str] = field(default_factory=list)
    skipped: bool = False  # True: the champion was trained from the same snapshot, spec and parameters


def train_and_register(
    settings: Settings,
    req: TrainRequest,
    prepared: Prepared,
    run_id: str,
    progress: Progress = log_progress,
    *,
    fit: Fit | None = None,
    documents: Mapping[str, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, float]]:
    """Train in the open run, log everything, register the model and point ``@challenger`` at it.

    ``fit(train_frame, spec, params)`` builds the model (default: the family's ``train``; the
    chunked path gathers the parts its chunk tasks trained); ``documents`` are extra JSON
    artifacts for the run.
    """
    import mlflow

    configure_mlflow(settings)
    c = mlflow.MlflowClient()
    try:
        family = get_family(req.family)
        seed = settings.seed if req.seed is None else req.seed
        spec = prepared.spec
        frame = family.conform(prepared.snapshot.load(), spec)
        train_df, test_df = family.split(frame, spec, seed)
        params = family.params(seed, req.params)
        with resumed(run_id):
            mlflow.set_tag(lineage.STAGE, "train")
            mlflow.log_params({**params.as_dict(), "rows_train": len(train_df), "rows_test": len(test_df), "split_seed": seed})
            with step(progress, f"training {family.name} on {len(train_df)} rows"):
                model = (fit or family.train)(train_df, spec, params)
            for path, document in (documents or {}).items():
                mlflow.log_dict(document, path)
            metrics = family.evaluate(model, test_df, spec)
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            shown = [k for k in family.headline_metrics if k in metrics]
            progress("test metrics: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in shown))
            report = family.report(model, test_df, spec, metrics)
            for path, figure in report.figures.items():
                mlflow.log_figure(figure, path)
            for path, document in report.documents.items():
                mlflow.log_dict(document, path)
            if report.params:
                mlflow.log_params(report.params)
            if report.metrics:
                mlflow.log_metrics(report.metrics)
            if report.tags:
                mlflow.set_tags(report.tags)
            with step(progress, "model card parts (bootstrap intervals)"):
                parts = family.card_parts(model, test_df, spec, settings)
                mlflow.log_text(cards.parts_json(parts), cards.PARTS_PATH)
            with step(progress, "logging model"):
                model_uri = family.log_model(model, train_df, spec)
        # the run is complete (FINISHED); register last so a failure above registers nothing
        with step(progress, f"registering {req.name}"):
            try:
                mv = mlflow.register_model(model_uri, req.name, tags={lineage.RUN_ID: run_id, FAMILY_TAG: req.family})
                version = str(mv.version)
                c.set_registered_model_alias(req.name, CHALLENGER, version)
                # tags for machines only (serving, monitoring, the DAGs); the run keeps the rest
                set_version_tags(
                    c,
                    req.name,
                    version,
                    {
                        lineage.TRIGGER: req.trigger,
                        lineage.LOGICAL_DATE: prepared.snapshot.logical_date,
                    },
                )
                describe_version(c, req.name, version, version_description(
                    family=req.family, metrics=metrics, headline=family.headline_metrics, snapshot=prepared.snapshot.uri,
                    logical_date=prepared.snapshot.logical_date, rows=prepared.snapshot.rows,
                    trigger=req.trigger, run_id=run_id,
                ))
            except BaseException:
                unregister(c, req.name, run_id)  # interrupted half-way: no version without its tags and alias
                c.set_terminated(run_id, "FAILED")
                raise
    except BaseException:
        fail_if_running(c, run_id)
        raise
    progress(f"registered {req.name} v{version} as @{CHALLENGER}")
    return version, metrics


def same_as_champion(settings: Settings, req: TrainRequest, prepared: Prepared) -> TrainingResult | None:
    """The champion, when it was trained from this very snapshot (digest), spec and parameters.

    Training again would only register a duplicate version; ``req.force`` skips this check.
    """
    configure_mlflow(settings)
    c = client(settings)
    champion = alias_version(c, req.name, CHAMPION)
    if champion is None:
        return None
    mv = c.get_model_version(req.name, champion)
    if not mv.run_id:
        return None
    run = c.get_run(mv.run_id)
    if run.data.tags.get(lineage.SNAPSHOT_DIGEST) != prepared.snapshot.digest:
        return None
    seed = settings.seed if req.seed is None else req.seed
    params = get_family(req.family).params(seed, req.params)
    expected = {**{k: str(v) for k, v in params.as_dict().items()}, "split_seed": str(seed)}
    if any(run.data.params.get(k) != v for k, v in expected.items()):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            logged = DatasetSpec.from_dict(load_yaml(Path(c.download_artifacts(mv.run_id, "data/spec.yaml", tmp))))
        except (LedgerlineError, OSError):
            return None
    if logged.to_dict() != prepared.spec.to_dict():
        return None
    metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
    reason = (
        f"v{champion} is @champion and was trained from this snapshot ({prepared.snapshot.digest[:12]}), "
        f"spec and parameters; nothing registered (--force trains again)"
    )
    return TrainingResult(
        model_name=req.name,
        snapshot_uri=prepared.snapshot.uri,
        run_id=mv.run_id,
        version=champion,
        metrics=metrics,
        decision=GateDecision(True, [reason], metrics, champion_version=champion),
        champion=champion,
        experiment_id=run.info.experiment_id,
        skipped=True,
    )
