"""Raw data to a promoted ``@champion``: ingest -> validate -> train -> register -> gate -> promote.

Each step is a function the CLI chains and an Airflow task can call alone; steps
hand each other URIs and ids (snapshot path, run id, model version), never frames.
Bad input fails before anything is written to MLflow; data that fails its suite
leaves a FAILED run holding the validation evidence and nothing registered.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.sources import (
    Snapshot,
    clear_rejected,
    date_key,
    ingest,
    load_snapshot,
    mark_rejected,
    read_table,
    snapshot_from_uri,
)
from features.spec import LABEL_COLUMN, DatasetSpec, PartialSpec, load_partial_spec, with_observed_labels
from ledgerline import db, lineage
from ledgerline.errors import DataError, LedgerlineError, RegistryError, SpecError, ValidationFailed
from ledgerline.families import FAMILY_TAG, family_from_tags
from ledgerline.names import check_model_name
from ledgerline.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    client,
    describe_version,
    record_gate_in_description,
    set_version_tags,
    version_description,
)
from ledgerline.settings import Settings
from training import cards
from training.family import FamilyParams, FittedModel, TrainingFamily, gate_policy, get_family
from training.gate import GateDecision, decide

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
Fit = Callable[[pd.DataFrame, DatasetSpec, FamilyParams], FittedModel]
TRIGGERS = ("manual", "schedule", "drift", "performance")
MIN_TRAINING_ROWS = 200  # below this no spec's min_rows is trusted: metrics would be noise
MIN_TEST_CLASS_ROWS = 10  # rows of each class the test split must hold


def _log_progress(msg: str) -> None:
    logger.info(msg)


@dataclass(frozen=True)
class TrainRequest:
    family: str
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
    force: bool = False  # train and register even when the champion came from the same inputs
    roles: Mapping[str, str] | None = None  # column roles from the command line, e.g. {"text": "memo"} (--text-column)
    #: series data (timeseries families): {"series_column", "time_column", "freq", "horizon", "allow_negative"}
    series: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_model_name(self.name)  # names become folders and registry keys: check before any work

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
    skipped: bool = False  # True: the champion was trained from the same snapshot, spec and parameters


@contextmanager
def _step(progress: Progress, label: str) -> Iterator[None]:
    progress(f"{label} ...")
    t0 = time.perf_counter()
    yield
    progress(f"{label} done ({time.perf_counter() - t0:.1f}s)")


@contextmanager
def _resumed(run_id: str) -> Iterator[object]:
    """``mlflow.start_run(run_id)`` in the run's own experiment, whatever experiment the process's
    fluent API had active (a long-lived worker, or another library, may have set one)."""
    import mlflow

    mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def _configure_mlflow(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri())


# --- spec ---------------------------------------------------------------------


def _accepted_spec_path(settings: Settings, model_name: str) -> Path:
    return settings.resolved_data_dir() / "specs" / f"{check_model_name(model_name)}.yaml"


def frozen_spec(settings: Settings, model_name: str) -> tuple[DatasetSpec, str] | None:
    """The spec a model's inputs are fixed by, and where it came from; None for a new model.

    The spec frozen under the data folder, else the one logged with the model's latest
    registered version (a model trained on generated data, or under another data folder).
    """
    accepted = _accepted_spec_path(settings, model_name)
    if accepted.exists():
        return DatasetSpec.from_dict(_load_yaml(accepted), source=str(accepted)), str(accepted)
    from mlflow.exceptions import MlflowException

    c = client(settings)
    try:
        versions = c.search_model_versions(f"name = '{model_name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if not mv.run_id:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = c.download_artifacts(mv.run_id, "data/spec.yaml", tmp)
            except (MlflowException, OSError):
                continue
            where = f"{model_name} v{mv.version} (run {mv.run_id} data/spec.yaml)"
            return DatasetSpec.from_dict(_load_yaml(Path(local)), source=where), where
    return None


def check_columns(df: pd.DataFrame, spec: DatasetSpec, model_name: str, where: str) -> None:
    """The data has exactly the columns the model's frozen spec knows (features, target, id, dropped)."""
    columns = [str(c) for c in df.columns]
    required = [*spec.feature_names, *([spec.target] if spec.target else []), *([spec.id_column] if spec.id_column else [])]
    known = {*required, *spec.drop, *spec.passthrough}
    missing = [c for c in required if c not in columns]
    unexpected = [c for c in columns if c not in known]
    if missing or unexpected:
        parts = ([f"lacks {missing}"] if missing else []) + ([f"has columns {unexpected} it does not know"] if unexpected else [])
        raise SpecError(
            f"model '{model_name}' takes the columns of its frozen spec ({where}), and this data "
            f"{' and '.join(parts)}; a model's inputs are fixed: pass --model-name NEW-NAME to train this data as another model"
        )


def resolve_spec(settings: Settings, req: TrainRequest, raw: pd.DataFrame) -> tuple[DatasetSpec, bool]:
    """The spec for this dataset and whether it is already frozen.

    A model's inputs are fixed by its frozen spec: data with other columns is refused
    (SpecError) before anything is written. Generated data uses the family's hand-written
    spec. A user's data uses the spec frozen at its first accepted snapshot; before that,
    one inferred from the data with the user's YAML (``--spec``) overriding inference.
    """
    family = get_family(req.family)
    existing = frozen_spec(settings, req.name)
    if existing is not None:
        check_columns(raw, existing[0], req.name, existing[1])
    if req.data is None and req.spec_path is None:
        return family.default_spec(req.name), True
    partial = load_partial_spec(req.spec_path) if req.spec_path else PartialSpec()
    if req.roles:
        partial.roles.update(req.roles)
    if req.series:  # the command line's series columns and frequency win over the YAML's
        opts = dict(req.series)
        roles = {"series": opts.pop("series_column", None), "timestamp": opts.pop("time_column", None)}
        partial.roles.update({k: str(v) for k, v in roles.items() if v})
        partial.series = {**(partial.series or {}), **{k: v for k, v in opts.items() if v is not None}}
    if req.target and partial.target and req.target != partial.target:
        raise SpecError(f"--target {req.target} contradicts the spec's target '{partial.target}'; pass only one")
    if existing is not None and req.spec_path is None:
        spec = existing[0]
        first_target = spec.target or spec.roles.get("value")  # a series spec's target is its value role
        if req.target and req.target != first_target:
            raise SpecError(
                f"model '{req.name}' was first trained with target '{first_target}', not '{req.target}'; "
                f"use another --model-name for a different target"
            )
        changed = [k for k in ("freq", "horizon") if req.series and spec.series and
                   req.series.get(k) is not None and req.series[k] != spec.series.get(k)]
        if changed:
            was = ", ".join(f"--{k} {spec.series[k]}" for k in changed)  # type: ignore[index]
            raise SpecError(f"model '{req.name}' was first trained with {was}; use another --model-name to change it")
        if req.positive_label is not None and str(req.positive_label) != spec.positive_label:
            raise SpecError(
                f"model '{req.name}' uses positive label '{spec.positive_label}', not '{req.positive_label}'; "
                f"use another --model-name for a different labelling"
            )
        # frozen when it came from the data folder; one found in the registry is frozen there at validation
        return spec, _accepted_spec_path(settings, req.name).exists()
    spec = family.infer_spec(
        raw, target=req.target, positive_label=req.positive_label, partial=partial, name=req.name
    )
    return spec, False


def check_rows(frame: pd.DataFrame, spec: DatasetSpec, *, per_class: bool = True, test_fraction: float = 0.2) -> None:
    """Enough rows (the spec's ``min_rows``, at least MIN_TRAINING_ROWS) and, for a classifier
    (``per_class``), enough of each class that the test split holds MIN_TEST_CLASS_ROWS of both;
    checked before anything is written."""
    n = len(frame)
    need = max(spec.min_rows, MIN_TRAINING_ROWS)
    if n < need:
        raise DataError(
            f"the data has {n} rows; training needs at least {need} "
            f"(the spec's min_rows is {spec.min_rows}, the floor {MIN_TRAINING_ROWS}); add rows"
        )
    if not per_class or LABEL_COLUMN not in frame.columns:
        return
    positives = int(frame[LABEL_COLUMN].sum())
    fewest = min(positives, n - positives)
    need_class = math.ceil(MIN_TEST_CLASS_ROWS / test_fraction)
    if fewest < need_class:
        which = f"'{spec.positive_label}'" if positives == fewest else f"other than '{spec.positive_label}'"
        raise DataError(
            f"only {fewest} rows have a {spec.target} {which}; the test split needs at least "
            f"{MIN_TEST_CLASS_ROWS} of each class, so the data needs {need_class}; add rows of that class"
        )


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
    family.params(seed, req.params)  # bad overrides fail before anything is written
    if req.data is None:
        data_seed = seed if req.seed is not None else _date_seed(settings.seed, req.logical_date)
        raw = family.generate(req.rows, data_seed)
        source = f"generator:{family.name}?rows={req.rows}&seed={data_seed}"
    else:
        raw = read_table(req.data)
        source = str(Path(req.data).resolve())
    spec, frozen = resolve_spec(settings, req, raw)
    spec = with_observed_labels(spec, raw)  # the run's spec records every label value (the label codec)
    raw, note = family.augment(settings, req.name, raw, spec)  # e.g. users' corrections from the prediction log
    if note:
        source = f"{source} + {note}"
        progress(f"added {note}")
    frame = family.conform(raw, spec)  # junk, missing columns, bad target: fail before anything is written
    check_rows(frame, spec, per_class=family.target_kind == "binary", test_fraction=family.test_fraction)
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

    return ensure_experiment(settings, settings.experiment_name(model_name), {lineage.MODEL_NAME: model_name})


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
    family = get_family(req.family)
    snap, spec = prepared.snapshot, prepared.spec
    frame = family.conform(snap.load(), spec)
    exp_id = _experiment_id(settings, req.name)
    run = mlflow.MlflowClient().create_run(
        exp_id,
        run_name=f"{req.name}-{snap.logical_date}-{req.trigger}",
        tags={
            lineage.MODEL_NAME: req.name,
            FAMILY_TAG: req.family,
            lineage.TRIGGER: req.trigger,
            lineage.LOGICAL_DATE: snap.logical_date,
            lineage.SNAPSHOT_URI: snap.uri,
            lineage.SNAPSHOT_DIGEST: snap.digest,
            lineage.STAGE: "validate",
            **(extra_tags or {}),
        },
    )
    run_id = run.info.run_id
    try:
        with _resumed(run_id):
            with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local file
                warnings.simplefilter("ignore", UserWarning)
                dataset = from_pandas(
                    frame.drop(columns=[LABEL_COLUMN], errors="ignore"),
                    source=snap.uri,
                    targets=spec.target or None,
                    name=f"{snap.dataset}@{snap.logical_date}",
                )
            mlflow.log_input(dataset, context="training")
            mlflow.set_tags(family.lineage(frame, spec))  # e.g. how many of the lines are users' corrections
            mlflow.log_text(spec.to_yaml(), "data/spec.yaml")
            with tempfile.TemporaryDirectory() as tmp:
                docs = Path(tmp) / "data_docs"
                report = gx_validate(frame, spec, docs_dir=docs, extra=family.expectations())
                mlflow.log_dict(report.result_json, "validation/result.json")
                if report.data_docs_dir and Path(report.data_docs_dir).exists():
                    mlflow.log_artifacts(str(report.data_docs_dir), "validation/data_docs")
            mlflow.log_metrics(
                {"validation_failed_expectations": len(report.failures), "validation_evaluated": report.evaluated}
            )
            mlflow.set_tag(lineage.VALIDATION, "passed" if report.success else "failed")
            if not report.success:
                mlflow.set_tag(lineage.STAGE, "validation_failed")
                mark_rejected(snap, f"{report.message()} (MLflow run {run_id})")
                raise ValidationFailed(
                    f"{snap.dataset}@{snap.logical_date} {report.message()}; nothing was trained "
                    f"(details: MLflow run {run_id}, artifacts validation/)",
                    report,
                )
    except BaseException:
        mlflow.MlflowClient().set_terminated(run_id, "FAILED")
        raise
    progress(f"validation passed: {report.evaluated} expectations ({len(report.failures)} failed)")
    clear_rejected(snap)
    if not prepared.spec_frozen:
        path = _accepted_spec_path(settings, req.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec.to_yaml())
        progress(f"spec frozen at first accepted snapshot: {path}")
    # leave the run open for training
    mlflow.MlflowClient().set_tag(run_id, lineage.STAGE, "validated")
    return run_id


def split(frame: pd.DataFrame, spec: DatasetSpec, seed: int, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deterministic train/test split of a conformed snapshot, as the family defines it (the gate re-creates it)."""
    return get_family(family).split(frame, spec, seed)


def check_params(family: str, seed: int, overrides: Mapping[str, Any] | None) -> None:
    """Raise LedgerlineError for unknown or out-of-range hyper-parameter overrides."""
    get_family(family).params(seed, overrides)


def train_and_register(
    settings: Settings,
    req: TrainRequest,
    prepared: Prepared,
    run_id: str,
    progress: Progress = _log_progress,
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

    _configure_mlflow(settings)
    c = mlflow.MlflowClient()
    try:
        family = get_family(req.family)
        seed = settings.seed if req.seed is None else req.seed
        spec = prepared.spec
        frame = family.conform(prepared.snapshot.load(), spec)
        train_df, test_df = family.split(frame, spec, seed)
        params = family.params(seed, req.params)
        with _resumed(run_id):
            mlflow.set_tag(lineage.STAGE, "train")
            mlflow.log_params({**params.as_dict(), "rows_train": len(train_df), "rows_test": len(test_df), "split_seed": seed})
            with _step(progress, f"training {family.name} on {len(train_df)} rows"):
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
            with _step(progress, "model card parts (bootstrap intervals)"):
                parts = family.card_parts(model, test_df, spec, settings)
                mlflow.log_text(cards.parts_json(parts), cards.PARTS_PATH)
            with _step(progress, "logging model"):
                model_uri = family.log_model(model, train_df, spec)
        # the run is complete (FINISHED); register last so a failure above registers nothing
        with _step(progress, f"registering {req.name}"):
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
                _unregister(c, req.name, run_id)  # interrupted half-way: no version without its tags and alias
                c.set_terminated(run_id, "FAILED")
                raise
    except BaseException:
        _fail_if_running(c, run_id)
        raise
    progress(f"registered {req.name} v{version} as @{CHALLENGER}")
    return version, metrics


def _unregister(c: Any, name: str, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        for mv in c.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
            c.delete_model_version(name, mv.version)
    except MlflowException:
        logger.exception("could not remove the half-registered version of %s from run %s", name, run_id)


def _fail_if_running(c: Any, run_id: str) -> None:
    if c.get_run(run_id).info.status == "RUNNING":
        c.set_terminated(run_id, "FAILED")


def same_as_champion(settings: Settings, req: TrainRequest, prepared: Prepared) -> TrainingResult | None:
    """The champion, when it was trained from this very snapshot (digest), spec and parameters.

    Training again would only register a duplicate version; ``req.force`` skips this check.
    """
    _configure_mlflow(settings)
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
            logged = DatasetSpec.from_dict(_load_yaml(Path(c.download_artifacts(mv.run_id, "data/spec.yaml", tmp))))
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


def version_family(settings: Settings, name: str, version: str) -> str:
    """The family a registered version records; a version without one is an error, never a default."""
    mv = client(settings).get_model_version(name, version)
    return family_from_tags(mv.tags, f"{name} v{version}")


def _holdout_for_version(
    settings: Settings, name: str, version: str, family: TrainingFamily
) -> tuple[pd.DataFrame, DatasetSpec]:
    """Re-create the challenger's test split from its snapshot and spec (both recorded on the run)."""
    import mlflow

    c = client(settings)
    mv = c.get_model_version(name, version)
    run_id = mv.run_id or mv.tags.get(lineage.RUN_ID)
    if not run_id:
        raise RegistryError(f"{name} v{version} has no source run, so its holdout cannot be re-created")
    run = c.get_run(run_id)
    snapshot_uri = run.data.tags[lineage.SNAPSHOT_URI]
    seed = int(run.data.params.get("split_seed", settings.seed))
    spec_text = mlflow.artifacts.load_text(f"runs:/{run_id}/data/spec.yaml")
    import yaml

    spec = DatasetSpec.from_dict(yaml.safe_load(spec_text), source=f"run {run_id} data/spec.yaml")
    frame = family.conform(load_snapshot(snapshot_uri), spec)
    _, test_df = family.split(frame, spec, seed)
    return test_df, spec


def evaluate_gate(settings: Settings, name: str, version: str) -> GateDecision:
    """Score ``version`` and the current champion on the version's holdout and decide; writes nothing.

    The family comes from the version's registry tag. The decision's ``champion_version`` is
    the champion it was compared with (None: there was none).
    """

    _configure_mlflow(settings)
    family = get_family(version_family(settings, name, version))
    c = client(settings)
    test_df, spec = _holdout_for_version(settings, name, version, family)
    challenger_model = family.load_model(f"models:/{name}/{version}")
    challenger_metrics = family.evaluate(challenger_model, test_df, spec)
    champion_version = alias_version(c, name, CHAMPION)
    champion_metrics: dict[str, float] | None = None
    notes: list[str] = []
    if champion_version is not None and champion_version != str(version):
        try:
            champion_family = version_family(settings, name, champion_version)
            if champion_family != family.name:
                raise LedgerlineError(f"it is a {champion_family} model, the challenger a {family.name} model")
            champion_model = family.load_model(f"models:/{name}/{champion_version}")
            champion_metrics = family.evaluate(champion_model, test_df, spec)
        except Exception as exc:  # a champion trained on another schema cannot be compared
            notes.append(f"champion v{champion_version} could not score this holdout: {str(exc).splitlines()[0]}")
    decision = decide(
        challenger_metrics, gate_policy(family, settings, name), champion=champion_metrics, champion_version=champion_version
    )
    if notes:
        decision = GateDecision(False, [*decision.reasons, *notes] if not decision.passed else notes,
                                decision.challenger, None, champion_version, [*decision.notes, *notes])
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
            lineage.GATE_DECISION: "promoted" if decision.passed else "rejected",
            lineage.GATE_REASONS: json.dumps(decision.reasons),
            lineage.GATE_CHAMPION_VERSION: champion_version or "none",
        },
    )
    record_gate_in_description(c, name, str(version), passed=decision.passed,
                               champion_version=champion_version, reasons=decision.reasons)
    _write_card(settings, name, str(version), cards.gate_of(decision))
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


def _write_card(settings: Settings, name: str, version: str, gate: Mapping[str, Any]) -> None:
    """The version's model card with this gate decision; a failure is logged, never fatal (the card documents)."""
    try:
        cards.write_card(settings, name, version, gate)
    except Exception:
        logger.exception("could not write the model card of %s v%s", name, version)


def gate_and_promote(
    settings: Settings,
    name: str,
    version: str,
    *,
    trigger: str = "manual",
    run_id: str | None = None,
    progress: Progress = _log_progress,
) -> tuple[GateDecision, str | None]:
    """Compare ``version`` with the current champion on the same holdout; promote if it passes.

    The decision goes to the ledger and to registry tags whatever it is. Returns the
    decision and the champion version after it. (``evaluate_gate`` + ``record_gate``;
    the Airflow DAG runs them as two tasks.)
    """
    decision = evaluate_gate(settings, name, version)
    champion_after = record_gate(settings, name, version, decision, trigger=trigger, run_id=run_id, progress=progress)
    return decision, champion_after


def run_training(settings: Settings, req: TrainRequest, progress: Progress = _log_progress) -> TrainingResult:
    """The whole loop for one dataset, as ``ledgerline train`` runs it."""
    with _step(progress, "[1/4] ingest"):
        prepared = prepare(settings, req, progress)
    if not req.force:
        unchanged = same_as_champion(settings, req, prepared)
        if unchanged is not None:
            progress(f"{req.name}: {unchanged.decision.reasons[0]}")
            return unchanged
    with _step(progress, "[2/4] validate (Great Expectations)"):
        run_id = validate(settings, req, prepared, progress)
    try:
        with _step(progress, "[3/4] train, evaluate, register"):
            version, metrics = train_and_register(settings, req, prepared, run_id, progress)
    except BaseException:  # SIGTERM between the steps too: no run is left RUNNING
        _fail_if_running(client(settings), run_id)
        raise
    with _step(progress, "[4/4] promotion gate"):
        decision, champion = gate_and_promote(
            settings, req.name, version, trigger=req.trigger, run_id=run_id, progress=progress
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
        artifacts=["plots/", "validation/data_docs"],
    )


class PromotionRefused(LedgerlineError):
    """A manual promotion the gate's absolute floors refuse (and no override with a reason was given)."""


#: shortest written reason a manual promotion or an override accepts
MIN_REASON_CHARS = 10


def manual_promote(
    settings: Settings,
    name: str,
    version: str,
    *,
    reason: str,
    actor: str,
    override: bool = False,
    progress: Progress = _log_progress,
) -> dict[str, Any]:
    """Move ``@champion`` to ``version`` by hand: through the gate's absolute floors (the family's
    rules with the settings' overrides, on the version's recorded test metrics) unless ``override``;
    either way recorded in the ledger as ``manual-promote`` with who asked and why. Returns the ledger row.
    """
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_CHARS:
        raise LedgerlineError(
            f"a manual promotion needs a written reason of at least {MIN_REASON_CHARS} characters (--reason '...')"
        )
    _configure_mlflow(settings)
    c = client(settings)
    from mlflow.exceptions import MlflowException

    try:
        mv = c.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model '{name}' has no version {version}; see `ledgerline ledger {name}` or GET /v1/models/{name}") from exc
    family = get_family(family_from_tags(mv.tags, f"{name} v{version}"))
    run_id = mv.run_id or mv.tags.get(lineage.RUN_ID)
    metrics: dict[str, float] = {}
    if run_id:
        metrics = {k.removeprefix("test_"): float(v) for k, v in c.get_run(run_id).data.metrics.items() if k.startswith("test_")}
    floors = decide(metrics, gate_policy(family, settings, name))
    previous = alias_version(c, name, CHAMPION)
    if previous == str(version):
        raise LedgerlineError(f"{name} v{version} is @champion already; nothing to promote")
    if not floors.passed and not override:
        raise PromotionRefused(
            f"{name} v{version} fails the gate's absolute floors: {'; '.join(floors.reasons)}; "
            "promote anyway only with an explicit override and a written reason (--override)"
        )
    reasons = [f"manual promotion by {actor}: {reason}"]
    if not floors.passed:
        reasons.append("OVERRIDE of the gate's absolute floors: " + "; ".join(floors.reasons))
    else:
        reasons += floors.reasons
    c.set_registered_model_alias(name, CHAMPION, str(version))
    set_version_tags(c, name, str(version), {
        lineage.GATE_DECISION: "manual-promote",
        lineage.GATE_REASONS: json.dumps(reasons),
        lineage.GATE_CHAMPION_VERSION: previous or "none",
    })
    record_gate_in_description(c, name, str(version), passed=True, champion_version=previous, reasons=reasons)
    _write_card(settings, name, str(version), {
        "decision": "MANUAL PROMOTION to @champion" + (" (floors overridden)" if not floors.passed else ""),
        "reasons": reasons, "notes": [], "champion_version": previous,
    })
    row = db.record_decision(
        settings.resolved_app_db_url(), model_name=name, version=str(version), action="manual-promote",
        passed=floors.passed, reasons=reasons, trigger="manual", previous_champion=previous,
        champion_after=str(version), challenger_metrics=metrics, run_id=run_id,
    )
    progress(f"@champion of {name}: v{previous or '-'} -> v{version} (manual promotion by {actor})")
    return row


def rollback(
    settings: Settings,
    name: str,
    *,
    trigger: str = "manual",
    progress: Progress = _log_progress,
    actor: str | None = None,
    note: str | None = None,
) -> str:
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
    if actor:
        reason += f" by {actor}" + (f": {note.strip()}" if note and note.strip() else "")
    set_version_tags(c, name, current, {lineage.ROLLED_BACK_AT: datetime.now(UTC).isoformat()})
    db.record_decision(
        url, model_name=name, version=previous, action="rollback", passed=True, reasons=[reason],
        trigger=trigger, previous_champion=current, champion_after=previous,
    )
    progress(f"@champion of {name}: v{current} -> v{previous}")
    return previous


# --- training in chunks (a family implementing ChunkedTraining; the Airflow DAG maps over them) ---
#
# plan_chunks -> train_chunk (one task per chunk, on any worker) -> gather_and_register. The plan
# and each chunk's part are files under <data dir>/chunks/<model>/<MLflow run id>/, written
# atomically (temporary file, fsync, rename), so a chunk whose worker died is trained again
# alone, a chunk already written is never trained twice, and any worker sharing the data dir
# can gather. The MLflow run is the key: a retried DAG run reuses its validated run.

CHUNK_PLAN = "plan.json"


@dataclass(frozen=True)
class ChunkPlan:
    """The series of each chunk, fixed once per MLflow run (a retry trains the same chunks)."""

    run_id: str
    snapshot_digest: str
    chunks: list[list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "snapshot_digest": self.snapshot_digest, "chunks": self.chunks}


@dataclass(frozen=True)
class ChunkResult:
    index: int
    series: int
    trained: bool  # False: the part was already written (a retry or a redelivered task)
    path: str


def chunked_family(family: str) -> Any:
    """The family's ChunkedTraining side, or None when it trains in one piece."""
    from training.family import chunked

    return chunked(get_family(family))


def chunk_dir(settings: Settings, model_name: str, run_id: str) -> Path:
    return settings.resolved_data_dir() / "chunks" / check_model_name(model_name) / run_id


def _write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds all of ``data`` or does not exist: a worker killed half-way leaves no part."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _chunked_inputs(
    settings: Settings, req: TrainRequest, prepared: Prepared
) -> tuple[Any, pd.DataFrame, DatasetSpec, FamilyParams]:
    family = chunked_family(req.family)
    if family is None:
        raise LedgerlineError(f"model family '{req.family}' does not train in chunks; train it in one task")
    seed = settings.seed if req.seed is None else req.seed
    frame = family.conform(prepared.snapshot.load(), prepared.spec)
    train_df, _ = family.split(frame, prepared.spec, seed)
    return family, train_df, prepared.spec, family.params(seed, req.params)


def plan_chunks(
    settings: Settings, req: TrainRequest, prepared: Prepared, run_id: str, max_chunks: int
) -> ChunkPlan:
    """The chunks of series to train (at most ``max_chunks``); the plan already made for this run, if any."""
    path = chunk_dir(settings, req.name, run_id) / CHUNK_PLAN
    if path.exists():
        stored = json.loads(path.read_text())
        if stored["snapshot_digest"] == prepared.snapshot.digest:
            return ChunkPlan(stored["run_id"], stored["snapshot_digest"], stored["chunks"])
    if max_chunks < 1:
        raise LedgerlineError(f"max_chunks is {max_chunks}; use 1 or more")
    family, train_df, spec, _ = _chunked_inputs(settings, req, prepared)
    chunks = [[str(s) for s in chunk] for chunk in family.plan_chunks(train_df, spec, max_chunks)]
    chunks = [c for c in chunks if c]
    flat = [s for c in chunks for s in c]
    if not chunks or len(chunks) > max_chunks or len(flat) != len(set(flat)):
        raise RuntimeError(f"{req.family}.plan_chunks gave {len(chunks)} chunks (max {max_chunks}) of "
                           f"{len(flat)} series ({len(set(flat))} distinct): a plan is 1..max disjoint chunks")
    plan = ChunkPlan(run_id, prepared.snapshot.digest, chunks)
    _write_atomically(path, json.dumps(plan.to_dict()).encode())
    logger.info("%s: %d series in %d chunks (run %s)", req.name, len(flat), len(chunks), run_id)
    return plan


def load_chunk_plan(settings: Settings, model_name: str, run_id: str) -> ChunkPlan:
    path = chunk_dir(settings, model_name, run_id) / CHUNK_PLAN
    if not path.exists():
        raise RuntimeError(f"no chunk plan for run {run_id} at {path}: plan_chunks runs first")
    stored = json.loads(path.read_text())
    return ChunkPlan(stored["run_id"], stored["snapshot_digest"], stored["chunks"])


def _part_path(settings: Settings, model_name: str, run_id: str, index: int) -> Path:
    return chunk_dir(settings, model_name, run_id) / f"part-{index:04d}.pkl"


def train_chunk(
    settings: Settings, req: TrainRequest, prepared: Prepared, run_id: str, index: int, *, attempt: int = 1
) -> ChunkResult:
    """Train chunk ``index`` of the run's plan and write its part, unless it is written already."""
    import os
    import pickle
    import socket

    plan = load_chunk_plan(settings, req.name, run_id)
    if not 0 <= index < len(plan.chunks):
        raise RuntimeError(f"chunk {index} is not in the plan of run {run_id} ({len(plan.chunks)} chunks)")
    series = plan.chunks[index]
    path = _part_path(settings, req.name, run_id, index)
    if path.exists():
        logger.info("chunk %d of run %s is already trained (%s); not training again", index, run_id, path)
        return ChunkResult(index, len(series), False, str(path))
    family, train_df, spec, params = _chunked_inputs(settings, req, prepared)
    rows = family.chunk_rows(train_df, spec, series)
    t0 = time.perf_counter()
    part = family.train_chunk(rows, spec, params)
    seconds = time.perf_counter() - t0
    record = {
        "index": index,
        "series": series,
        "part": part,
        "attempt": attempt,
        "seconds": round(seconds, 3),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "written_at": datetime.now(UTC).isoformat(),
    }
    _write_atomically(path, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
    logger.info("chunk %d of run %s: %d series, %d rows in %.1fs (attempt %d)", index, run_id, len(series),
                len(rows), seconds, attempt)
    return ChunkResult(index, len(series), True, str(path))


def chunk_records(settings: Settings, model_name: str, run_id: str) -> list[dict[str, Any]]:
    """Every chunk's written part with its bookkeeping (which attempt wrote it, where, how long)."""
    import pickle

    plan = load_chunk_plan(settings, model_name, run_id)
    records = []
    missing = []
    for index in range(len(plan.chunks)):
        path = _part_path(settings, model_name, run_id, index)
        if not path.exists():
            missing.append(index)
            continue
        records.append(pickle.loads(path.read_bytes()))
    if missing:
        raise RuntimeError(f"chunks {missing} of run {run_id} have no part under {chunk_dir(settings, model_name, run_id)}")
    return records


def gather_and_register(
    settings: Settings, req: TrainRequest, prepared: Prepared, run_id: str, progress: Progress = _log_progress
) -> tuple[str, dict[str, float]]:
    """Gather every chunk's part into one model and register it like ``train_and_register`` does.

    The run gets ``training/chunks.json`` (series, attempt, host and seconds per chunk); the
    part files are removed once the version is registered (the plan stays).
    """
    family = chunked_family(req.family)
    if family is None:
        raise LedgerlineError(f"model family '{req.family}' does not train in chunks; train it in one task")
    records = chunk_records(settings, req.name, run_id)
    summary = {
        "chunks": [{k: r[k] for k in ("index", "attempt", "seconds", "host", "written_at")} | {"series": len(r["series"])}
                   for r in records],
        "series": sum(len(r["series"]) for r in records),
    }

    def fit(train_df: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> FittedModel:
        return family.gather([r["part"] for r in records], spec, params)

    version, metrics = train_and_register(settings, req, prepared, run_id, progress, fit=fit,
                                          documents={"training/chunks.json": summary})
    discard_chunk_parts(settings, req.name, run_id)
    return version, metrics


def discard_chunk_parts(settings: Settings, model_name: str, run_id: str) -> None:
    """Remove the part files of a run whose model is registered (the plan stays for retried tasks)."""
    folder = chunk_dir(settings, model_name, run_id)
    for part in folder.glob("part-*.pkl"):
        part.unlink(missing_ok=True)


__all__ = [
    "ChunkPlan",
    "ChunkResult",
    "DataError",
    "Prepared",
    "TrainRequest",
    "TrainingResult",
    "check_params",
    "PromotionRefused",
    "evaluate_gate",
    "gather_and_register",
    "plan_chunks",
    "gate_and_promote",
    "manual_promote",
    "prepare",
    "prepared_from_uri",
    "record_gate",
    "rollback",
    "run_training",
    "same_as_champion",
    "train_and_register",
    "train_chunk",
    "validate",
]
