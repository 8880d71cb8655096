"""A training request and its inputs: the spec a model's data is held to (frozen at the first accepted
snapshot), the checks before anything is written, and the immutable snapshot (``prepare``)."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.sources import Snapshot, date_key, ingest, read_table, snapshot_from_uri
from features.spec import LABEL_COLUMN, DatasetSpec, PartialSpec, load_partial_spec, with_observed_labels
from ledgerline import lineage
from ledgerline.errors import DataError, LedgerlineError, SnapshotConflict, SpecError
from ledgerline.names import check_model_name
from ledgerline.registry import client
from ledgerline.settings import Settings
from training.family import get_family
from training.requests import TrainRequest
from training.runs import Progress, log_progress
from training.sources.read import WindowRead
from training.sources.window import snapshot_key

logger = logging.getLogger(__name__)

TRIGGERS = ("manual", "schedule", "drift", "performance", "feedback")
MIN_TRAINING_ROWS = 200  # below this no spec's min_rows is trusted: metrics would be noise
MIN_TEST_CLASS_ROWS = 10  # rows of each class the test split must hold


def accepted_spec_path(settings: Settings, model_name: str) -> Path:
    return settings.resolved_data_dir() / "specs" / f"{check_model_name(model_name)}.yaml"


def frozen_spec(settings: Settings, model_name: str) -> tuple[DatasetSpec, str] | None:
    """The spec a model's inputs are fixed by, and where it came from; None for a new model.

    The spec frozen under the data folder, else the one logged with the model's latest
    registered version (a model trained on generated data, or under another data folder).
    """
    accepted = accepted_spec_path(settings, model_name)
    if accepted.exists():
        return DatasetSpec.from_dict(load_yaml(accepted), source=str(accepted)), str(accepted)
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
            return DatasetSpec.from_dict(load_yaml(Path(local)), source=where), where
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
    if req.data is None and req.sources is None and req.spec_path is None:
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
        fixed = {o.setting: o.flag for o in family.train_options if o.fixed and o.setting}
        given, first = dict(req.series or {}), dict(spec.series or {})
        changed = [k for k in fixed if given.get(k) is not None and k in first and given[k] != first[k]]
        if changed:
            was = ", ".join(f"{fixed[k]} {first[k]}" for k in changed)
            raise SpecError(f"model '{req.name}' was first trained with {was}; use another --model-name to change it")
        if req.positive_label is not None and str(req.positive_label) != spec.positive_label:
            raise SpecError(
                f"model '{req.name}' uses positive label '{spec.positive_label}', not '{req.positive_label}'; "
                f"use another --model-name for a different labelling"
            )
        # frozen when it came from the data folder; one found in the registry is frozen there at validation
        return spec, accepted_spec_path(settings, req.name).exists()
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


def load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


@dataclass(frozen=True)
class Prepared:
    snapshot: Snapshot
    spec: DatasetSpec
    spec_frozen: bool


def prepare(settings: Settings, req: TrainRequest, progress: Progress = log_progress) -> Prepared:
    """Load the raw data, check it against its spec, and write the immutable snapshot."""
    if req.trigger not in TRIGGERS:
        raise LedgerlineError(f"unknown trigger '{req.trigger}'; use one of {list(TRIGGERS)}")
    family = get_family(req.family)
    seed = settings.seed if req.seed is None else req.seed
    family.params(seed, req.params)  # bad overrides fail before anything is written
    key: str | None = None
    window_tags: dict[str, str] = {}
    if req.sources is not None:
        window = read_sources(settings, req, progress)  # NothingNew / SourceError before anything is written
        raw, source = window.frame, f"{window.description} [{req.sources.origin}]"
        assert window.interval is not None
        key = snapshot_key(req.logical_date, window.interval.end)
        window_tags = window_lineage(req, window)
    elif req.data is None:
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
    check_rows(frame, spec, per_class=family.holds_out_every_class(spec), test_fraction=family.test_fraction)
    try:
        snap = ingest(raw, dataset=req.name, data_dir=settings.resolved_data_dir(), logical_date=req.logical_date,
                      source=source, key=key, lineage=window_tags)
    except SnapshotConflict as exc:
        if req.sources is None and note:
            # the day's data changed because labelled production rows (e.g. corrections) arrived since its
            # snapshot: the new content gets a snapshot of its own, keyed by the date and its digest (so a retry
            # finds it); the earlier snapshot stays as it was
            from features.sources import date_key, frame_digest

            key = f"{date_key(req.logical_date)}_{frame_digest(raw.reset_index(drop=True))[:12]}"
            progress(f"the {date_key(req.logical_date)} snapshot of {req.name} holds other rows ({note} arrived since "
                     f"it was written); writing snapshot {key}")
            snap = ingest(raw, dataset=req.name, data_dir=settings.resolved_data_dir(), logical_date=req.logical_date,
                          source=source, key=key, lineage=window_tags)
            progress(f"snapshot {snap.dataset}@{snap.logical_date}: {snap.rows} rows ({'new' if snap.created else 'reused'})")
            return Prepared(snap, spec, frozen)
        if req.sources is None:
            raise
        raise SnapshotConflict(
            f"the data window of {req.name}@{key} has other rows than when its snapshot was written (rows arrived "
            f"in a window that was still open, or a source changed its past); snapshots are immutable: "
            f"train a later --logical-date, or delete {settings.resolved_data_dir() / 'snapshots' / req.name / str(key)} "
            "deliberately"
        ) from exc
    progress(f"snapshot {snap.dataset}@{snap.logical_date}: {snap.rows} rows ({'new' if snap.created else 'reused'})")
    return Prepared(snap, spec, frozen)


def read_sources(settings: Settings, req: TrainRequest, progress: Progress = log_progress) -> WindowRead:
    """The request's data window read from its sources (``req.sources``): NothingNew for an empty window,
    SourceError naming a source that fails."""
    from training.sources import end_of_day, parse_moment, read_window, window_interval

    assert req.sources is not None
    end = parse_moment(req.interval_end) if req.interval_end else end_of_day(req.logical_date)
    interval = window_interval(req.sources, end)
    existing = frozen_spec(settings, req.name) if _reads_production(req) else None
    progress(f"reading the window {interval.label()} ({req.sources.window.describe()}) from {req.sources.origin}")
    window = read_window(settings, req.sources, model_name=req.name, family=req.family, interval=interval,
                         spec=existing[0] if existing else None)
    progress("rows per source: " + ", ".join(f"{k} {n}" for k, n in window.counts.items()))
    return window


def _reads_production(req: TrainRequest) -> bool:
    from training.sources import PredictionsSource

    return req.sources is not None and any(isinstance(s, PredictionsSource) for s in req.sources.sources)


def window_lineage(req: TrainRequest, window: WindowRead) -> dict[str, str]:
    """Run tags of a data window: its bounds, its policy and the rows each source gave."""
    assert req.sources is not None and window.interval is not None
    tags = {
        lineage.WINDOW_START: window.interval.start.isoformat(),
        lineage.WINDOW_END: window.interval.end.isoformat(),
        lineage.WINDOW_POLICY: req.sources.window.describe(),
    }
    tags.update({lineage.source_rows_tag(k): str(n) for k, n in window.counts.items()})
    return tags


def _date_seed(base: int, logical_date: str | None) -> int:
    """Generated data differs per logical date (weekly retrains see a new week) and not within one."""
    import zlib

    day = date_key(logical_date)
    return (base * 1_000_003 + zlib.crc32(day.encode())) % 2**31


def prepared_from_uri(settings: Settings, req: TrainRequest, snapshot_uri: str) -> Prepared:
    """Re-open a snapshot written by ``prepare`` (an Airflow task hands over only its URI)."""
    snap = snapshot_from_uri(snapshot_uri)
    raw = snap.load()
    spec, frozen = resolve_spec(settings, req, raw)
    # the spec ``prepare`` gave (its label values recorded), so a DAG run logs what the CLI logs
    return Prepared(snap, with_observed_labels(spec, raw), frozen)


def split(frame: pd.DataFrame, spec: DatasetSpec, seed: int, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deterministic train/test split of a conformed snapshot, as the family defines it (the gate re-creates it)."""
    return get_family(family).split(frame, spec, seed)


def check_params(family: str, seed: int, overrides: Mapping[str, Any] | None) -> None:
    """Raise LedgerlineError for unknown or out-of-range hyper-parameter overrides."""
    get_family(family).params(seed, overrides)
