"""Batch scoring jobs: a file in the artifact store scored chunk by chunk, resumable, with progress.

A job is one row of ``batches`` (app database) and objects under ``<artifact store>/batches/<id>/``:

    input.csv | input.parquet          the uploaded file (or none: ``input_uri`` names an object)
    results/000000.csv ...             the scored rows of chunk 0, 1, ... (CSV without header, or Parquet)
    errors/000000.csv ...              the rejected rows of a chunk with the reason (CSV without header)
    errors/header.csv                  the errors file's header line

:func:`run_batch` (the Airflow task body) scores with the engine of ``ledgerline score``
(:func:`serving.batch.scored_chunks`) using the version fixed at submission. Each chunk is
*committed* before the next is scored: its objects are written, its rows go to the prediction
log (ids derived from the batch id and the row number, so rewriting them is a no-op), then
one transaction inserts its ``batch_chunks`` row and adds its counts to the job. A killed or
retried task starts after the last committed chunk: rows are neither lost nor doubled.

The package: :mod:`~serving.batch_jobs.table` (the jobs table, chunk rows, object names, ids),
:mod:`~serving.batch_jobs.runner` (one attempt at a job; the scheduled variant),
:mod:`~serving.batch_jobs.results` (the committed results and errors streamed back). Their
public names are importable from here.

A job fails when more than ``max_error_share`` of its rows are rejected (at once when the
rejected rows already exceed that share of the whole file), or on a permanent error (bad
file, model gone); its committed chunks stay downloadable. A cancel request stops it after
the chunk being scored.
"""

from __future__ import annotations

from serving.batch_jobs.results import error_blocks, result_blocks
from serving.batch_jobs.runner import BatchRun, run_batch, score_dated
from serving.batch_jobs.table import (
    BATCH_DAG_ID,
    FORMATS,
    PREDICTION_ID,
    SCHEDULE_OWNER,
    SCHEDULED_DAG_ID,
    STATES,
    TERMINAL,
    Batch,
    BatchError,
    ChunkRow,
    as_dict,
    batch_prediction_ids,
    chunk_key,
    commit_chunk,
    committed_chunks,
    create_batch,
    dated_batch_id,
    errors_header_key,
    errors_key,
    finish,
    format_of,
    get_batch,
    input_key,
    new_batch_id,
    owner_of,
    prefix,
    request_cancel,
    set_dag_run,
    update_batch,
)

__all__ = [
    "BATCH_DAG_ID",
    "FORMATS",
    "PREDICTION_ID",
    "SCHEDULED_DAG_ID",
    "SCHEDULE_OWNER",
    "STATES",
    "TERMINAL",
    "Batch",
    "BatchError",
    "BatchRun",
    "ChunkRow",
    "as_dict",
    "batch_prediction_ids",
    "chunk_key",
    "commit_chunk",
    "committed_chunks",
    "create_batch",
    "dated_batch_id",
    "error_blocks",
    "errors_header_key",
    "errors_key",
    "finish",
    "format_of",
    "get_batch",
    "input_key",
    "new_batch_id",
    "owner_of",
    "prefix",
    "request_cancel",
    "result_blocks",
    "run_batch",
    "score_dated",
    "set_dag_run",
    "update_batch",
]
