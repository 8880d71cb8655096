"""What a registered version was trained on: its run's snapshot and spec, for hooks that rebuild state
from a champion's training window (e.g. online features, :meth:`training.family.TrainingFamily.on_champion`).

The snapshot is the file the run's lineage tag names (``ledgerline.snapshot_uri``); when that file is
gone (another machine, a cleaned data folder), a data file logged to the run under ``data/`` (CSV or
Parquet); otherwise a :class:`~ledgerline.errors.DataError` saying what was looked for.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.sources import load_snapshot, read_table
from features.spec import DatasetSpec
from ledgerline import lineage
from ledgerline.errors import DataError, RegistryError
from ledgerline.registry import client
from ledgerline.settings import Settings

DATA_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class TrainingData:
    """A version's training snapshot (raw, as ingested) and the spec its run logged."""

    model_name: str
    version: str
    run_id: str
    frame: pd.DataFrame
    spec: DatasetSpec
    source: str  # where the rows came from: the snapshot file, or the run's artifact
    logical_date: str | None


def version_run_id(settings: Settings, model_name: str, version: str) -> str:
    """The training run of a registered version (RegistryError when there is none)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client(settings).get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model '{model_name}' has no version {version}; see `ledgerline ledger {model_name}`") from exc
    run_id = mv.run_id or (mv.tags or {}).get(lineage.RUN_ID)
    if not run_id:
        raise RegistryError(f"{model_name} v{version} records no training run, so its training data is unknown")
    return str(run_id)


def version_spec(settings: Settings, model_name: str, version: str, run_id: str | None = None) -> DatasetSpec:
    """The spec ``model_name`` v``version``'s run logged (``data/spec.yaml``): cheap, before reading any rows."""
    import yaml
    from mlflow.exceptions import MlflowException

    c = client(settings)
    run_id = run_id or version_run_id(settings, model_name, version)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            spec_path = Path(c.download_artifacts(run_id, "data/spec.yaml", tmp))
        except (MlflowException, OSError) as exc:
            raise DataError(f"{model_name} v{version} (run {run_id}) logged no data/spec.yaml, "
                            "so its training data cannot be read") from exc
        return DatasetSpec.from_dict(yaml.safe_load(spec_path.read_text()), source=f"run {run_id} data/spec.yaml")


def training_data(settings: Settings, model_name: str, version: str, run_id: str | None = None,
                  spec: DatasetSpec | None = None) -> TrainingData:
    """The rows ``model_name`` v``version`` was trained on and its spec (see the module's docstring)."""
    from mlflow.exceptions import MlflowException

    c = client(settings)
    run_id = run_id or version_run_id(settings, model_name, version)
    spec = spec or version_spec(settings, model_name, version, run_id)
    run = c.get_run(run_id)
    what = f"{model_name} v{version} (run {run_id})"
    snapshot_uri = run.data.tags.get(lineage.SNAPSHOT_URI)
    logical_date = run.data.tags.get(lineage.LOGICAL_DATE)
    if snapshot_uri and Path(snapshot_uri).exists():
        return TrainingData(model_name, str(version), run_id, load_snapshot(snapshot_uri), spec, snapshot_uri, logical_date)
    try:
        logged = [f.path for f in c.list_artifacts(run_id, "data") if not f.is_dir and f.path.endswith(DATA_SUFFIXES)]
    except (MlflowException, OSError):
        logged = []
    if logged:
        with tempfile.TemporaryDirectory() as tmp:
            local = c.download_artifacts(run_id, sorted(logged)[0], tmp)
            frame = read_table(local)
        return TrainingData(model_name, str(version), run_id, frame, spec, f"runs:/{run_id}/{sorted(logged)[0]}", logical_date)
    where = f"its snapshot {snapshot_uri} is gone" if snapshot_uri else "its run names no snapshot"
    raise DataError(f"the training data of {what} cannot be read: {where}, and the run logged no data file "
                    f"(data/*.parquet or data/*.csv)")
