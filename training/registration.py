"""The train-and-register step: train in the validated run, log metrics, report, card parts and the
model, register it and point ``@challenger`` at it; the check that skips training when the champion or
the latest version came from the same snapshot, spec and parameters (:func:`unchanged_since`), and the
ledger row of a run that registered nothing (:func:`record_no_change`)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
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
    skipped: bool = False  # True: nothing registered (inputs unchanged, or nothing new in the window)


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


#: ledger actions of a run that registered nothing: its inputs equal a registered version's, or its window was empty
UNCHANGED = "unchanged"
NOTHING_NEW = "nothing-new"
NO_CHANGE_ACTIONS = (UNCHANGED, NOTHING_NEW)


@dataclass(frozen=True)
class Unchanged:
    """A registered version trained from the same snapshot (digest), spec and parameters as a request."""

    model_name: str
    version: str
    roles: tuple[str, ...]  # what that version is: "champion", "latest" (the newest registered) or both
    run_id: str
    digest: str
    metrics: dict[str, float]
    experiment_id: str
    champion: str | None  # the champion now (it stays)
    airflow_run: str | None  # "<dag_id>/<run_id>" of the DAG run that trained it, if one did

    @property
    def reason(self) -> str:
        words = {"champion": f"@{CHAMPION}", "latest": "the latest registered version"}
        what = " and ".join(words[r] for r in self.roles)
        return (
            f"unchanged: the data (snapshot digest {self.digest[:12]}), spec and parameters equal those of "
            f"v{self.version} ({what}); nothing registered (--force trains again)"
        )

    def result(self, snapshot_uri: str) -> TrainingResult:
        """What ``run_training`` returns for it: the matched version, nothing trained."""
        return TrainingResult(
            model_name=self.model_name,
            snapshot_uri=snapshot_uri,
            run_id=self.run_id,
            version=self.version,
            metrics=self.metrics,
            decision=GateDecision(True, [self.reason], self.metrics, champion_version=self.champion),
            champion=self.champion,
            experiment_id=self.experiment_id,
            skipped=True,
        )


def _expected_params(settings: Settings, req: TrainRequest) -> dict[str, str]:
    """The run params a training of ``req`` logs that decide the model: the family's and the split seed."""
    seed = settings.seed if req.seed is None else req.seed
    params = get_family(req.family).params(seed, req.params)
    return {**{k: str(v) for k, v in params.as_dict().items()}, "split_seed": str(seed)}


def _trained_from(c: Any, mv: Any, prepared: Prepared, params: Mapping[str, str]) -> Any | None:
    """The training run of version ``mv`` when it was trained from ``prepared`` (snapshot digest and spec)
    and ``params``; else None."""
    if not mv.run_id:
        return None
    run = c.get_run(mv.run_id)
    if run.data.tags.get(lineage.SNAPSHOT_DIGEST) != prepared.snapshot.digest:
        return None
    if any(run.data.params.get(k) != v for k, v in params.items()):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            logged = DatasetSpec.from_dict(load_yaml(Path(c.download_artifacts(mv.run_id, "data/spec.yaml", tmp))))
        except (LedgerlineError, OSError):
            return None
    return run if _same_spec(logged, prepared) else None


def _same_spec(logged: DatasetSpec, prepared: Prepared) -> bool:
    """Whether the spec a version logged is ``prepared``'s. A version the retrain DAG trained before it
    recorded label values logged its spec without them: those of the same snapshot are filled in first."""
    if logged.to_dict() == prepared.spec.to_dict():
        return True
    if logged.negative_labels or logged.target is None or logged.positive_label is None:
        return False
    from features.spec import with_observed_labels

    labels = pd.read_parquet(prepared.snapshot.uri, columns=[logged.target])
    return with_observed_labels(logged, labels).to_dict() == prepared.spec.to_dict()


def unchanged_since(settings: Settings, req: TrainRequest, prepared: Prepared) -> Unchanged | None:
    """The registered version a training of ``req`` on ``prepared`` would only duplicate, or None.

    Unchanged: the snapshot digest, the spec and the parameters (the family's and the split seed)
    equal those of the latest registered version of the model or of its ``@champion``. The one
    check of the CLI (:func:`training.pipeline.run_training`) and the retrain DAG (its ``ingest``
    task); ``req.force`` is for the callers to honour.
    """
    from mlflow.exceptions import MlflowException

    configure_mlflow(settings)
    c = client(settings)
    try:
        versions = c.search_model_versions(f"name = '{req.name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    champion = alias_version(c, req.name, CHAMPION)
    by_version = {str(v.version): v for v in versions}
    candidates = [v for v in (champion, str(latest.version)) if v is not None and v in by_version]
    params = _expected_params(settings, req)
    for version in dict.fromkeys(candidates):  # the champion first; once when it is also the latest
        run = _trained_from(c, by_version[version], prepared, params)
        if run is None:
            continue
        roles = tuple(r for r, v in (("champion", champion), ("latest", str(latest.version))) if v == version)
        metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
        return Unchanged(
            model_name=req.name,
            version=version,
            roles=roles,
            run_id=str(run.info.run_id),
            digest=prepared.snapshot.digest,
            metrics=metrics,
            experiment_id=str(run.info.experiment_id),
            champion=champion,
            airflow_run=run.data.tags.get(lineage.AIRFLOW_RUN),
        )
    return None


def record_no_change(
    settings: Settings,
    model_name: str,
    *,
    action: str,
    reasons: Sequence[str],
    trigger: str,
    run_id: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The promotion-ledger row of a run that registered nothing: ``unchanged`` (its inputs equal
    ``version``'s) or ``nothing-new`` (its window was empty). The champion stays; ``version``
    defaults to the champion (else the latest version, else empty). Returns the row."""
    from mlflow.exceptions import MlflowException

    from ledgerline import db

    if action not in NO_CHANGE_ACTIONS:
        raise ValueError(f"record_no_change writes {NO_CHANGE_ACTIONS}, not {action!r}")
    c = client(settings)
    champion = alias_version(c, model_name, CHAMPION)
    if version is None:
        version = champion
    if version is None:
        try:
            found = [int(v.version) for v in c.search_model_versions(f"name = '{model_name}'")]
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            found = []
        version = str(max(found)) if found else ""
    return db.record_decision(
        settings.resolved_app_db_url(),
        model_name=model_name,
        version=str(version),
        action=action,
        passed=True,
        reasons=list(reasons),
        trigger=trigger,
        previous_champion=champion,
        champion_after=champion,
        run_id=run_id,
    )
