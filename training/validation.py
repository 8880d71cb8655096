"""The validation step: the MLflow run opened with the snapshot's lineage, the Great Expectations suite
run and logged (result JSON, Data Docs); bad data fails the run and rejects the snapshot."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from features.sources import clear_rejected, mark_rejected, snapshot_lineage
from features.spec import LABEL_COLUMN
from ledgerline import lineage
from ledgerline.errors import ValidationFailed
from ledgerline.families import FAMILY_TAG
from ledgerline.settings import Settings
from training.family import get_family
from training.inputs import Prepared, TrainRequest, accepted_spec_path
from training.runs import Progress, configure_mlflow, experiment_id, log_progress, resumed


def validate(
    settings: Settings,
    req: TrainRequest,
    prepared: Prepared,
    progress: Progress = log_progress,
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

    configure_mlflow(settings)
    family = get_family(req.family)
    snap, spec = prepared.snapshot, prepared.spec
    frame = family.conform(snap.load(), spec)
    exp_id = experiment_id(settings, req.name)
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
            **snapshot_lineage(snap),  # a data window's bounds and rows per source
            **(extra_tags or {}),
        },
    )
    run_id = run.info.run_id
    try:
        with resumed(run_id):
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
        path = accepted_spec_path(settings, req.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec.to_yaml())
        progress(f"spec frozen at first accepted snapshot: {path}")
    # leave the run open for training
    mlflow.MlflowClient().set_tag(run_id, lineage.STAGE, "validated")
    return run_id
