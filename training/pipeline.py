"""Raw data to a promoted ``@champion``: ingest -> validate -> train -> register -> gate -> promote.

Each step is a function the CLI chains and an Airflow task can call alone; steps
hand each other URIs and ids (snapshot path, run id, model version), never frames.
Bad input fails before anything is written to MLflow; data that fails its suite
leaves a FAILED run holding the validation evidence and nothing registered.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.sources import Snapshot, date_key, ingest, load_snapshot, read_table, snapshot_from_uri
from features.spec import LABEL_COLUMN, DatasetSpec, PartialSpec, conform, infer_spec, load_partial_spec
from ledgerline import db
from ledgerline.errors import DataError, LedgerlineError, RegistryError, SpecError, ValidationFailed
from ledgerline.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    client,
    describe_version,
    load_sklearn_model,
    record_gate_in_description,
    set_version_tags,
    version_description,
)
from ledgerline.settings import Settings
from training.families import Family, get_family
from training.gate import GateDecision, decide

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
TRIGGERS = ("manual", "schedule", "drift", "performance")
TEST_FRACTION = 0.2
FEATURES_DIR = Path(__file__).resolve().parent.parent / "features"
# skops (MLflow's safe default) refuses unknown types; these are ours and XGBoost's, nothing else.
SKOPS_TRUSTED_TYPES = ["features.transform.TabularFeatures", "xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"]


def _log_progress(msg: str) -> None:
    logger.info(msg)


@dataclass(frozen=True)
class TrainRequest:
    family: str = "credit-risk"
    model_name: str | None = None
    data: Path | None = None  # None: the family's seeded generator
    spec_path: Path | None = None
    target: str | None = None
    positive_label: str | None = None
    logical_date: str | None = None
    trigger: str = "manual"
    rows: int = 20_000
    seed: int | None = None
    params: Mapping[str, Any] | None = None  # hyper-parameter overrides, e.g. {"max_depth": 3}

    @property
    def name(self) -> str:
        return self.model_name or self.family


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


@contextmanager
def _step(progress: Progress, label: str) -> Iterator[None]:
    progress(f"{label} ...")
    t0 = time.perf_counter()
    yield
    progress(f"{label} done ({time.perf_counter() - t0:.1f}s)")


def _configure_mlflow(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri())


# --- spec ---------------------------------------------------------------------


def _accepted_spec_path(settings: Settings, model_name: str) -> Path:
    return settings.resolved_data_dir() / "specs" / f"{model_name}.yaml"


def resolve_spec(settings: Settings, req: TrainRequest, raw: pd.DataFrame) -> tuple[DatasetSpec, bool]:
    """The spec for this dataset and whether it is already frozen.

    Generated data uses the family's hand-written spec. A user's data uses the spec
    frozen at its first accepted snapshot; before that, one inferred from the data
    with the user's YAML (``--spec``) overriding inference.
    """
    family = get_family(req.family)
    if req.data is None and req.spec_path is None:
        return family.default_spec(req.name), True
    partial = load_partial_spec(req.spec_path) if req.spec_path else PartialSpec()
    if req.target and partial.target and req.target != partial.target:
        raise SpecError(f"--target {req.target} contradicts the spec's target '{partial.target}'; pass only one")
    accepted = _accepted_spec_path(settings, req.name)
    if accepted.exists() and req.spec_path is None:
        spec = DatasetSpec.from_dict(_load_yaml(accepted), source=str(accepted))
        if req.target and req.target != spec.target:
            raise SpecError(
                f"model '{req.name}' was first trained with target '{spec.target}', not '{req.target}'; "
                f"use another --model-name for a different target"
            )
        if req.positive_label is not None and str(req.positive_label) != spec.positive_label:
            raise SpecError(
                f"model '{req.name}' uses positive label '{spec.positive_label}', not '{req.positive_label}'; "
                f"use another --model-name for a different labelling"
            )
        return spec, True
    spec = infer_spec(
        raw, target=req.target, positive_label=req.positive_label, partial=partial, name=req.name
    )
    return spec, False


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


# --- steps ----------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    snapshot: Snapshot
    spec: DatasetSpec
    spec_frozen: bool


def prepare(settings: Settings, req: TrainRequest, progress: Progress = _log_progress) -> Prepared:
    """Load the raw data, check it against its spec, and write the immutable snapshot."""
    if req.trigger not in TRIGGERS:
        raise LedgerlineError(f"unknown trigger '{req.trigger}'; use one of {list(TRIGGERS)}")
    family = get_family(req.family)
    seed = settings.seed if req.seed is None else req.seed
    _params(family, seed, req.params)  # bad overrides fail before anything is written
    if req.data is None:
        data_seed = seed if req.seed is not None else _date_seed(settings.seed, req.logical_date)
        raw = family.generate(req.rows, data_seed)
        source = f"generator:{family.name}?rows={req.rows}&seed={data_seed}"
    else:
        raw = read_table(req.data)
        source = str(Path(req.data).resolve())
    spec, frozen = resolve_spec(settings, req, raw)
    conform(raw, spec)  # junk, missing columns, bad target: fail before anything is written
    snap = ingest(raw, dataset=req.name, data_dir=settings.resolved_data_dir(), logical_date=req.logical_date, source=source)
    progress(f"snapshot {snap.dataset}@{snap.logical_date}: {snap.rows} rows ({'new' if snap.created else 'reused'})")
    return Prepared(snap, spec, frozen)


def _date_seed(base: int, logical_date: str | None) -> int:
    """Generated data differs per logical date (weekly retrains see a new week) and not within one."""
    import zlib

    day = date_key(logical_date)
    return (base * 1_000_003 + zlib.crc32(day.encode())) % 2**31


def prepared_from_uri(settings: Settings, req: TrainRequest, snapshot_uri: str) -> Prepared:
    """Re-open a snapshot written by ``prepare`` (an Airflow task hands over only its URI)."""
    snap = snapshot_from_uri(snapshot_uri)
    spec, frozen = resolve_spec(settings, req, snap.load())
    return Prepared(snap, spec, frozen)


def _experiment_id(settings: Settings, model_name: str) -> str:
    from ledgerline.registry import ensure_experiment

    return ensure_experiment(settings, settings.experiment_name(model_name), {"ledgerline.model_name": model_name})


def validate(
    settings: Settings,
    req: TrainRequest,
    prepared: Prepared,
    progress: Progress = _log_progress,
    *,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Open the MLflow run, log lineage and the GX validation result; raise ValidationFailed on bad data.

    Returns the run id; the run stays open (RUNNING) for the train step. ``extra_tags`` are
    set when the run is created (the Airflow DAG tags its run id, so a retried task finds the run).
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    from expectations import validate as gx_validate

    _configure_mlflow(settings)
    snap, spec = prepared.snapshot, prepared.spec
    frame = conform(snap.load(), spec)
    exp_id = _experiment_id(settings, req.name)
    run = mlflow.MlflowClient().create_run(
        exp_id,
        run_name=f"{req.name}-{snap.logical_date}-{req.trigger}",
        tags={
            "ledgerline.model_name": req.name,
            "ledgerline.family": req.family,
            "ledgerline.trigger": req.trigger,
            "ledgerline.logical_date": snap.logical_date,
            "ledgerline.snapshot_uri": snap.uri,
            "ledgerline.snapshot_digest": snap.digest,
            "ledgerline.stage": "validate",
            **(extra_tags or {}),
        },
    )
    run_id = run.info.run_id
    try:
        with mlflow.start_run(run_id=run_id):
            with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local file
                warnings.simplefilter("ignore", UserWarning)
                dataset = from_pandas(
                    frame.drop(columns=[LABEL_COLUMN]),
                    source=snap.uri,
                    targets=spec.target,
                    name=f"{snap.dataset}@{snap.logical_date}",
                )
            mlflow.log_input(dataset, context="training")
            mlflow.log_text(spec.to_yaml(), "data/spec.yaml")
            with tempfile.TemporaryDirectory() as tmp:
                docs = Path(tmp) / "data_docs"
                report = gx_validate(frame, spec, docs_dir=docs)
                mlflow.log_dict(report.result_json, "validation/result.json")
                if report.data_docs_dir and Path(report.data_docs_dir).exists():
                    mlflow.log_artifacts(str(report.data_docs_dir), "validation/data_docs")
            mlflow.log_metrics(
                {"validation_failed_expectations": len(report.failures), "validation_evaluated": report.evaluated}
            )
            mlflow.set_tag("ledgerline.validation", "passed" if report.success else "failed")
            if not report.success:
                mlflow.set_tag("ledgerline.stage", "validation_failed")
                raise ValidationFailed(
                    f"{snap.dataset}@{snap.logical_date} {report.message()}; nothing was trained "
                    f"(details: MLflow run {run_id}, artifacts validation/)",
                    report,
                )
    except BaseException:
        mlflow.MlflowClient().set_terminated(run_id, "FAILED")
        raise
    progress(f"validation passed: {report.evaluated} expectations ({len(report.failures)} failed)")
    if not prepared.spec_frozen:
        path = _accepted_spec_path(settings, req.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec.to_yaml())
        progress(f"spec frozen at first accepted snapshot: {path}")
    # leave the run open for training
    mlflow.MlflowClient().set_tag(run_id, "ledgerline.stage", "validated")
    return run_id


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deterministic train/test split of a conformed snapshot (the gate re-creates it)."""
    from sklearn.model_selection import train_test_split

    train_df, test_df = train_test_split(frame, test_size=TEST_FRACTION, stratify=frame[LABEL_COLUMN], random_state=seed)
    return train_df, test_df


def _params(family: Family, seed: int, overrides: Mapping[str, Any] | None) -> Any:
    """The family's default hyper-parameters with the request's overrides, type-checked."""
    import dataclasses

    params = family.params(seed)
    if not overrides:
        return params
    fields = {f.name: f for f in dataclasses.fields(params)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise LedgerlineError(f"unknown parameter(s) {unknown} for {family.name}; known: {sorted(fields)}")
    typed: dict[str, Any] = {}
    for key, value in overrides.items():
        current = getattr(params, key)
        try:
            if isinstance(current, bool):
                typed[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            else:
                typed[key] = type(current)(value)
        except (TypeError, ValueError) as exc:
            raise LedgerlineError(f"parameter {key}={value!r} is not a {type(current).__name__}") from exc
    return dataclasses.replace(params, **typed)


def _pip_requirements() -> list[str]:
    pkgs = ["mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "skops", "pyarrow"]
    return [f"{p}=={pkg_version(p)}" for p in pkgs]


def train_and_register(
    settings: Settings, req: TrainRequest, prepared: Prepared, run_id: str, progress: Progress = _log_progress
) -> tuple[str, dict[str, float]]:
    """Train in the open run, log everything, register the model and point ``@challenger`` at it."""
    import mlflow
    from mlflow.models import infer_signature

    from training import credit_risk, plots

    _configure_mlflow(settings)
    family = get_family(req.family)
    seed = settings.seed if req.seed is None else req.seed
    spec = prepared.spec
    frame = conform(prepared.snapshot.load(), spec)
    train_df, test_df = split(frame, seed)
    params = _params(family, seed, req.params)
    features = spec.feature_names
    c = mlflow.MlflowClient()
    try:
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tag("ledgerline.stage", "train")
            mlflow.log_params({**params.as_dict(), "rows_train": len(train_df), "rows_test": len(test_df), "split_seed": seed})
            with _step(progress, f"training {family.name} on {len(train_df)} rows"):
                model = family.train(train_df[features], train_df[LABEL_COLUMN].to_numpy(), spec, params)
            metrics = family.evaluate(model, test_df[features], test_df[LABEL_COLUMN].to_numpy())
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            progress("test metrics: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "ks", "brier", "log_loss")))

            y, p = test_df[LABEL_COLUMN].to_numpy(), credit_risk.predict_proba(model, test_df[features])
            importance = credit_risk.feature_importance(model, test_df[features])
            mlflow.log_figure(plots.roc_figure(y, p, metrics["roc_auc"]), "plots/roc_curve.png")
            mlflow.log_figure(plots.calibration_figure(y, p), "plots/calibration.png")
            mlflow.log_figure(plots.importance_figure(importance), "plots/feature_importance.png")
            mlflow.log_dict(importance, "plots/feature_importance.json")

            example = train_df[features].head(5)
            signature = infer_signature(example, model.predict_proba(example))
            with _step(progress, "logging model"):
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=signature,
                    input_example=example,
                    pyfunc_predict_fn="predict_proba",
                    code_paths=[str(FEATURES_DIR)],
                    pip_requirements=_pip_requirements(),
                    serialization_format="skops",
                    skops_trusted_types=SKOPS_TRUSTED_TYPES,
                )
        # the run is complete (FINISHED); register last so a failure above registers nothing
        with _step(progress, f"registering {req.name}"):
            mv = mlflow.register_model(info.model_uri, req.name, tags={"ledgerline.run_id": run_id})
            version = str(mv.version)
            try:
                c.set_registered_model_alias(req.name, CHALLENGER, version)
                # tags for machines only (serving, monitoring, the DAGs); the run keeps the rest
                set_version_tags(
                    c,
                    req.name,
                    version,
                    {
                        "ledgerline.trigger": req.trigger,
                        "ledgerline.logical_date": prepared.snapshot.logical_date,
                        "ledgerline.family": req.family,
                    },
                )
                describe_version(c, req.name, version, version_description(
                    family=req.family, metrics=metrics, snapshot=prepared.snapshot.uri,
                    logical_date=prepared.snapshot.logical_date, rows=prepared.snapshot.rows,
                    trigger=req.trigger, run_id=run_id,
                ))
            except BaseException:
                c.delete_model_version(req.name, version)
                raise
    except BaseException:
        run = c.get_run(run_id)
        if run.info.status == "RUNNING":
            c.set_terminated(run_id, "FAILED")
        raise
    progress(f"registered {req.name} v{version} as @{CHALLENGER}")
    return version, metrics


def _holdout_for_version(settings: Settings, name: str, version: str) -> tuple[pd.DataFrame, np.ndarray, DatasetSpec]:
    """Re-create the challenger's test split from its snapshot and spec (both recorded on the run)."""
    import mlflow

    c = client(settings)
    mv = c.get_model_version(name, version)
    run_id = mv.run_id or mv.tags.get("ledgerline.run_id")
    if not run_id:
        raise RegistryError(f"{name} v{version} has no source run, so its holdout cannot be re-created")
    run = c.get_run(run_id)
    snapshot_uri = run.data.tags["ledgerline.snapshot_uri"]
    seed = int(run.data.params.get("split_seed", settings.seed))
    spec_text = mlflow.artifacts.load_text(f"runs:/{run_id}/data/spec.yaml")
    import yaml

    spec = DatasetSpec.from_dict(yaml.safe_load(spec_text), source=f"run {run_id} data/spec.yaml")
    frame = conform(load_snapshot(snapshot_uri), spec)
    _, test_df = split(frame, seed)
    return test_df[spec.feature_names], test_df[LABEL_COLUMN].to_numpy(), spec


def evaluate_gate(settings: Settings, name: str, version: str, *, family_name: str = "credit-risk") -> GateDecision:
    """Score ``version`` and the current champion on the version's holdout and decide; writes nothing.

    The decision's ``champion_version`` is the champion it was compared with (None: there was none).
    """

    _configure_mlflow(settings)
    family = get_family(family_name)
    c = client(settings)
    X_test, y_test, _ = _holdout_for_version(settings, name, version)
    challenger_model = load_sklearn_model(f"models:/{name}/{version}")
    challenger_metrics = family.evaluate(challenger_model, X_test, y_test)
    champion_version = alias_version(c, name, CHAMPION)
    champion_metrics: dict[str, float] | None = None
    notes: list[str] = []
    if champion_version is not None and champion_version != str(version):
        try:
            champion_model = load_sklearn_model(f"models:/{name}/{champion_version}")
            champion_metrics = family.evaluate(champion_model, X_test, y_test)
        except Exception as exc:  # a champion trained on another schema cannot be compared
            notes.append(f"champion v{champion_version} could not score this holdout: {str(exc).splitlines()[0]}")
    decision = decide(
        challenger_metrics, family.thresholds(settings), champion=champion_metrics, champion_version=champion_version
    )
    if notes:
        decision = GateDecision(False, [*decision.reasons, *notes] if not decision.passed else notes,
                                decision.challenger, None, champion_version, notes)
    return decision


def record_gate(
    settings: Settings,
    name: str,
    version: str,
    decision: GateDecision,
    *,
    trigger: str = "manual",
    run_id: str | None = None,
    progress: Progress = _log_progress,
) -> str | None:
    """Act on a gate decision: move ``@champion`` on a pass, tag the version, write the ledger row.

    Returns the champion version after it.
    """
    _configure_mlflow(settings)
    c = client(settings)
    champion_version = decision.champion_version
    champion_after = str(version) if decision.passed else champion_version
    if decision.passed:
        c.set_registered_model_alias(name, CHAMPION, str(version))
    set_version_tags(
        c,
        name,
        str(version),
        {
            "ledgerline.gate.decision": "promoted" if decision.passed else "rejected",
            "ledgerline.gate.reasons": json.dumps(decision.reasons),
            "ledgerline.gate.champion_version": champion_version or "none",
        },
    )
    record_gate_in_description(c, name, str(version), passed=decision.passed,
                               champion_version=champion_version, reasons=decision.reasons)
    db.record_decision(
        settings.resolved_app_db_url(),
        model_name=name,
        version=str(version),
        action="promote" if decision.passed else "reject",
        passed=decision.passed,
        reasons=decision.reasons,
        trigger=trigger,
        previous_champion=champion_version,
        champion_after=champion_after,
        challenger_metrics=decision.challenger,
        champion_metrics=decision.champion,
        run_id=run_id,
    )
    verdict = "PROMOTED to @champion" if decision.passed else f"REJECTED (champion stays v{champion_version})"
    progress(f"gate: v{version} {verdict}: " + "; ".join(decision.reasons))
    return champion_after


def gate_and_promote(
    settings: Settings,
    name: str,
    version: str,
    *,
    family_name: str = "credit-risk",
    trigger: str = "manual",
    run_id: str | None = None,
    progress: Progress = _log_progress,
) -> tuple[GateDecision, str | None]:
    """Compare ``version`` with the current champion on the same holdout; promote if it passes.

    The decision goes to the ledger and to registry tags whatever it is. Returns the
    decision and the champion version after it. (``evaluate_gate`` + ``record_gate``;
    the Airflow DAG runs them as two tasks.)
    """
    decision = evaluate_gate(settings, name, version, family_name=family_name)
    champion_after = record_gate(settings, name, version, decision, trigger=trigger, run_id=run_id, progress=progress)
    return decision, champion_after


def run_training(settings: Settings, req: TrainRequest, progress: Progress = _log_progress) -> TrainingResult:
    """The whole loop for one dataset, as ``ledgerline train`` runs it."""
    with _step(progress, "[1/4] ingest"):
        prepared = prepare(settings, req, progress)
    with _step(progress, "[2/4] validate (Great Expectations)"):
        run_id = validate(settings, req, prepared, progress)
    with _step(progress, "[3/4] train, evaluate, register"):
        version, metrics = train_and_register(settings, req, prepared, run_id, progress)
    with _step(progress, "[4/4] promotion gate"):
        decision, champion = gate_and_promote(
            settings, req.name, version, family_name=req.family, trigger=req.trigger, run_id=run_id, progress=progress
        )
    import mlflow

    exp = mlflow.get_experiment_by_name(settings.experiment_name(req.name))
    return TrainingResult(
        model_name=req.name,
        snapshot_uri=prepared.snapshot.uri,
        run_id=run_id,
        version=version,
        metrics=metrics,
        decision=decision,
        champion=champion,
        experiment_id=exp.experiment_id if exp else "",
        artifacts=["plots/roc_curve.png", "plots/calibration.png", "plots/feature_importance.png", "validation/data_docs"],
    )


def rollback(settings: Settings, name: str, *, trigger: str = "manual", progress: Progress = _log_progress) -> str:
    """Move ``@champion`` back to the champion before the current one; record it. Returns the new champion."""
    _configure_mlflow(settings)
    c = client(settings)
    current = alias_version(c, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model '{name}' has no @champion to roll back; train and promote one first")
    url = settings.resolved_app_db_url()
    rows = db.ledger(url, name)
    previous = None
    for row in reversed(rows):
        if row["champion_after"] == current and row["action"] in ("promote", "manual-promote") and row["version"] == current:
            previous = row["previous_champion"]
            break
    if previous is None:
        raise RegistryError(
            f"model '{name}' v{current} has no earlier champion recorded in the promotion ledger; nothing to roll back to"
        )
    c.set_registered_model_alias(name, CHAMPION, previous)
    reason = f"rollback from v{current} to v{previous}"
    set_version_tags(c, name, current, {"ledgerline.rolled_back_at": datetime.now(UTC).isoformat()})
    db.record_decision(
        url, model_name=name, version=previous, action="rollback", passed=True, reasons=[reason],
        trigger=trigger, previous_champion=current, champion_after=previous,
    )
    progress(f"@champion of {name}: v{current} -> v{previous}")
    return previous


__all__ = [
    "DataError",
    "Prepared",
    "TrainRequest",
    "TrainingResult",
    "evaluate_gate",
    "gate_and_promote",
    "prepare",
    "prepared_from_uri",
    "record_gate",
    "rollback",
    "run_training",
    "train_and_register",
    "validate",
]
