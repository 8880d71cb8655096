"""Training in chunks (a family implementing ChunkedTraining; the Airflow DAG maps over them).

plan_chunks -> train_chunk (one task per chunk, on any worker) -> gather_and_register. The plan
and each chunk's part are files under <data dir>/chunks/<model>/<MLflow run id>/, written
atomically (temporary file, fsync, rename), so a chunk whose worker died is trained again
alone, a chunk already written is never trained twice, and any worker sharing the data dir
can gather. The MLflow run is the key: a retried DAG run reuses its validated run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.spec import DatasetSpec
from ledgerline.errors import LedgerlineError
from ledgerline.names import check_model_name
from ledgerline.settings import Settings
from training.family import FamilyParams, FittedModel, get_family
from training.inputs import Prepared, TrainRequest
from training.registration import train_and_register
from training.runs import Progress, log_progress

logger = logging.getLogger(__name__)

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
    settings: Settings, req: TrainRequest, prepared: Prepared, run_id: str, progress: Progress = log_progress
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
