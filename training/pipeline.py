"""Raw data to a promoted ``@champion``: ingest -> validate -> train -> register -> gate -> promote.

Each step is a function the CLI chains and an Airflow task can call alone; steps
hand each other URIs and ids (snapshot path, run id, model version), never frames. The steps
live in their own modules (``training.inputs``: request, spec and snapshot; ``training.validation``;
``training.registration``; ``training.promotion``: gate, manual promotion, rollback;
``training.chunked``); this module chains them and re-exports what callers import from it.
Bad input fails before anything is written to MLflow; data that fails its suite
leaves a FAILED run holding the validation evidence and nothing registered.
"""

from __future__ import annotations

from typing import Any

from ledgerline.errors import DataError, NothingNew
from ledgerline.registry import client
from ledgerline.settings import Settings
from training.chunked import (
    CHUNK_PLAN,
    ChunkPlan,
    ChunkResult,
    chunk_dir,
    chunk_records,
    chunked_family,
    discard_chunk_parts,
    gather_and_register,
    load_chunk_plan,
    plan_chunks,
    train_chunk,
)
from training.inputs import (
    MIN_TEST_CLASS_ROWS,
    MIN_TRAINING_ROWS,
    TRIGGERS,
    Prepared,
    TrainRequest,
    check_columns,
    check_params,
    check_rows,
    frozen_spec,
    prepare,
    prepared_from_uri,
    resolve_spec,
    split,
)
from training.promotion import (
    MIN_REASON_CHARS,
    AlreadyChampion,
    PromotionRefused,
    evaluate_gate,
    gate_and_promote,
    manual_promote,
    record_gate,
    rollback,
    version_family,
)
from training.registration import (
    NO_CHANGE_ACTIONS,
    NOTHING_NEW,
    UNCHANGED,
    Fit,
    TrainingResult,
    Unchanged,
    record_no_change,
    train_and_register,
    unchanged_since,
)
from training.runs import Progress, fail_if_running, log_progress, step
from training.validation import validate


def nothing_new(
    settings: Settings, req: TrainRequest, exc: NothingNew, progress: Progress = log_progress
) -> dict[str, Any]:
    """The run's data window is empty: nothing is trained or registered; the promotion ledger gets a
    ``nothing-new`` row saying so (the champion stays). Returns the row. (The retrain DAG writes its row
    through ``apps.orchestration.record_no_change_once``: once per DAG run.)"""
    row = record_no_change(settings, req.name, action=NOTHING_NEW, reasons=[str(exc)], trigger=req.trigger)
    progress(f"{req.name}: {exc}")
    return row


def run_training(settings: Settings, req: TrainRequest, progress: Progress = log_progress) -> TrainingResult:
    """The whole loop for one dataset, as ``ledgerline train`` runs it. An empty data window raises
    :class:`~ledgerline.errors.NothingNew` after :func:`nothing_new` wrote its ledger row, with nothing
    else written; inputs equal to the latest registered version's or the champion's register nothing
    and write an ``unchanged`` ledger row (``req.force`` trains anyway)."""
    with step(progress, "[1/4] ingest"):
        try:
            prepared = prepare(settings, req, progress)
        except NothingNew as exc:
            nothing_new(settings, req, exc, progress)
            raise
    if not req.force:
        unchanged = unchanged_since(settings, req, prepared)
        if unchanged is not None:
            record_no_change(settings, req.name, action=UNCHANGED, reasons=[unchanged.reason], trigger=req.trigger,
                             run_id=unchanged.run_id, version=unchanged.version)
            progress(f"{req.name}: {unchanged.reason}")
            return unchanged.result(prepared.snapshot.uri)
    with step(progress, "[2/4] validate (Great Expectations)"):
        run_id = validate(settings, req, prepared, progress)
    try:
        with step(progress, "[3/4] train, evaluate, register"):
            version, metrics = train_and_register(settings, req, prepared, run_id, progress)
    except BaseException:  # SIGTERM between the steps too: no run is left RUNNING
        fail_if_running(client(settings), run_id)
        raise
    with step(progress, "[4/4] promotion gate"):
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


__all__ = [
    "AlreadyChampion",
    "CHUNK_PLAN",
    "ChunkPlan",
    "ChunkResult",
    "DataError",
    "Fit",
    "MIN_REASON_CHARS",
    "MIN_TEST_CLASS_ROWS",
    "MIN_TRAINING_ROWS",
    "NOTHING_NEW",
    "NO_CHANGE_ACTIONS",
    "NothingNew",
    "Prepared",
    "Progress",
    "PromotionRefused",
    "TRIGGERS",
    "TrainRequest",
    "TrainingResult",
    "UNCHANGED",
    "Unchanged",
    "check_columns",
    "check_params",
    "check_rows",
    "chunk_dir",
    "chunk_records",
    "chunked_family",
    "discard_chunk_parts",
    "evaluate_gate",
    "frozen_spec",
    "gate_and_promote",
    "gather_and_register",
    "load_chunk_plan",
    "manual_promote",
    "nothing_new",
    "plan_chunks",
    "prepare",
    "prepared_from_uri",
    "record_no_change",
    "record_gate",
    "resolve_spec",
    "rollback",
    "run_training",
    "split",
    "train_and_register",
    "train_chunk",
    "unchanged_since",
    "validate",
    "version_family",
]
