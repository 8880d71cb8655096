"""Batch scoring jobs: submit a file, follow its progress, download its results (serving/batch_jobs.py).

    POST /v1/models/{name}/batches     a CSV or Parquet body (Content-Type text/csv or
                                       application/vnd.apache.parquet), streamed to the artifact store,
                                       or JSON {"input_uri": "s3://.../file.csv"} naming an object there
                                       -> 202 {"batch_id", ...}; the champion version is fixed now
    GET  /v1/batches/{id}              state, rows total/done/failed, timestamps
    GET  /v1/batches/{id}/results      the scored rows so far (all of them once it succeeded), streamed
    GET  /v1/batches/{id}/errors       the rejected rows with their reasons (CSV), streamed
    POST /v1/batches/{id}/cancel       stop after the chunk being scored

The same API keys as predictions; a caller sees only the jobs it submitted (the job keeps the
SHA-256 of its key). The job runs as a run of the ``ledgerline_batch_score`` DAG, started through
Airflow's REST API (``LEDGERLINE_AIRFLOW_URL``).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from ledgerline.airflow_api import AirflowUnavailable, airflow_api, get_dag_run, trigger_dag_run
from ledgerline.artifact_store import ArtifactStore, artifact_store
from serving import batch_jobs as jobs
from serving.family import get_serving_family
from serving.http_errors import error_response
from serving.state import ServingState, require_api_key, state_of

logger = logging.getLogger(__name__)

router = APIRouter(tags=["batches"])

CSV_TYPES = ("text/csv", "application/csv")
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")
MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
FLUSH_BYTES = 1024 * 1024


def _owner(request: Request, state: ServingState) -> str:
    return jobs.owner_of(request.headers.get(state.settings.api_key_header, ""))


def _store(state: ServingState) -> ArtifactStore:
    return artifact_store(state.platform)


def _options(request: Request, state: ServingState, body: dict[str, Any] | None = None) -> tuple[str | None, float] | Response:
    """``output_format`` and ``max_error_share`` from the query (or the JSON body); a 422 response when bad."""
    given: dict[str, Any] = dict(request.query_params)
    if body:
        given.update({k: v for k, v in body.items() if k in ("output_format", "max_error_share")})
    fmt = given.get("output_format")
    if fmt is not None and fmt not in jobs.FORMATS:
        return error_response(422, f"output_format must be csv or parquet, not {fmt!r}")
    share = given.get("max_error_share", state.settings.batch_max_error_share)
    try:
        share = float(share)
    except (TypeError, ValueError):
        return error_response(422, f"max_error_share must be a number between 0 and 1, not {share!r}")
    if not 0.0 <= share <= 1.0:
        return error_response(422, f"max_error_share must be between 0 and 1, not {share}")
    return fmt, share


@router.post("/v1/models/{name}/batches", status_code=202, summary="Submit a batch scoring job")
async def submit_batch(name: str, request: Request) -> Response:
    state = state_of(request)
    require_api_key(request)
    model = state.holder.get(name)  # 404 unknown / 503 not loaded: the version is the served champion
    family = get_serving_family(model.family)
    if not family.scores_rows:
        return error_response(422, f"model '{name}' does not score files of rows, so it takes no batch jobs; "
                                   f"{family.instead_of_rows(name)}")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    store = _store(state)
    batch_id = jobs.new_batch_id()
    rows_total: int | None = None
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError:
            return error_response(400, "the body is not JSON; send {\"input_uri\": \"<object in the artifact store>\"}")
        if not isinstance(body, dict) or not isinstance(body.get("input_uri"), str):
            return error_response(422, "body.input_uri is missing: name a .csv or .parquet object in the artifact store "
                                       f"({store.root}), or upload the file with Content-Type text/csv")
        opts = _options(request, state, body)
        if isinstance(opts, Response):
            return opts
        input_uri = body["input_uri"]
        in_fmt = jobs.format_of(input_uri)
        key = store.key_of(input_uri)
        if in_fmt is None:
            return error_response(422, f"body.input_uri {input_uri!r} must end in .csv or .parquet")
        if key is None:
            return error_response(422, f"body.input_uri {input_uri!r} is not inside the artifact store {store.root}")
        if not await anyio.to_thread.run_sync(store.exists, key):
            return error_response(422, f"body.input_uri {input_uri!r} does not exist in the artifact store")
    else:
        if ctype in CSV_TYPES:
            in_fmt = "csv"
        elif ctype in PARQUET_TYPES:
            in_fmt = "parquet"
        else:
            return error_response(415, f"Content-Type {ctype or '(none)'} is not accepted: send the file as text/csv or "
                                       "application/vnd.apache.parquet, or JSON {\"input_uri\": ...}")
        opts = _options(request, state)
        if isinstance(opts, Response):
            return opts
        key = jobs.input_key(batch_id, in_fmt)
        input_uri = store.uri(key)
        uploaded = await _upload(request, state, store, key, in_fmt, model.schema.columns, model.answer_model)
        if isinstance(uploaded, Response):
            return uploaded
        rows_total = uploaded
    out_fmt, share = opts
    batch = await anyio.to_thread.run_sync(lambda: jobs.create_batch(
        state.engine, batch_id=batch_id, model_name=model.name, model_version=model.version, family=model.family,
        owner=_owner(request, state), input_uri=input_uri, input_format=in_fmt, output_format=out_fmt or in_fmt,
        results_uri=store.uri(jobs.prefix(batch_id) + "/results"), chunk_rows=state.settings.batch_chunk_rows,
        max_error_share=share, rows_total=rows_total,
    ))
    run_id = f"batch__{batch_id}"
    try:
        await anyio.to_thread.run_sync(lambda: trigger_dag_run(
            airflow_api(state.platform), jobs.BATCH_DAG_ID, {"batch_id": batch_id}, run_id=run_id,
            note=f"{model.name} v{model.version}",
        ))
    except AirflowUnavailable as exc:
        await anyio.to_thread.run_sync(jobs.finish, state.engine, batch_id, "failed", f"not started: {exc}")
        return error_response(503, f"the batch could not be started: {exc}", headers={"Retry-After": "30"})
    await anyio.to_thread.run_sync(jobs.set_dag_run, state.engine, batch_id, run_id)
    return JSONResponse(batch.public(), status_code=202, headers={"Location": f"/v1/batches/{batch_id}"})


async def _upload(request: Request, state: ServingState, store: ArtifactStore, key: str, fmt: str,
                  columns: Any, answer_model: Any) -> int | None | Response:
    """The body streamed to ``key``; a CSV's header is checked against the model's columns first.
    Returns the CSV's row count (None for Parquet) or an error response (nothing stored)."""
    limit = state.settings.batch_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return error_response(413, f"the file has {declared} bytes; the limit is {limit} (LEDGERLINE_SERVING_BATCH_MAX_UPLOAD_BYTES)")
    writer = await anyio.to_thread.run_sync(store.open_writer, key)
    buf = bytearray()
    lines = 0
    last = b"\n"
    header_checked = fmt != "csv"
    head = bytearray()
    has_rows = False  # a CSV: anything but blank lines after the header
    flushed = b""  # the last block written: with ``buf``, the file's tail (a Parquet file's footer)
    try:
        async for block in request.stream():
            if not block:
                continue
            if writer.size + len(buf) + len(block) > limit:
                raise _Refused(error_response(413, f"the file is larger than {limit} bytes "
                                                   "(LEDGERLINE_SERVING_BATCH_MAX_UPLOAD_BYTES)"))
            if fmt == "csv":
                lines += block.count(b"\n")
                last = block[-1:]
                if not header_checked:
                    head += block
                    if b"\n" in head or len(head) > 1024 * 1024:
                        problem = _check_header(bytes(head), columns, answer_model)
                        if problem:
                            raise _Refused(error_response(422, problem))
                        header_checked = True
                        has_rows = bool(bytes(head).partition(b"\n")[2].strip())
                elif not has_rows:
                    has_rows = bool(block.strip())
            buf += block
            if len(buf) >= FLUSH_BYTES:
                flushed = bytes(buf)
                buf.clear()
                await anyio.to_thread.run_sync(writer.write, flushed)
        if writer.size + len(buf) == 0:
            raise _Refused(error_response(422, "the file is empty; send a CSV with a header line and rows, or a Parquet file"))
        if fmt == "csv" and not header_checked:
            problem = _check_header(bytes(head), columns, answer_model)
            if problem:
                raise _Refused(error_response(422, problem))
        if fmt == "csv" and not has_rows:
            raise _Refused(error_response(422, "the CSV has a header line but no rows to score; send the rows "
                                               "under the header (one per line)"))
        if fmt == "parquet":
            problem = _check_parquet(flushed[-FLUSH_BYTES:] + bytes(buf))
            if problem:
                raise _Refused(error_response(422, problem))
        if buf:
            await anyio.to_thread.run_sync(writer.write, bytes(buf))
        await anyio.to_thread.run_sync(writer.commit)
    except _Refused as refused:
        await anyio.to_thread.run_sync(writer.abort)
        return refused.response
    except ClientDisconnect:
        await anyio.to_thread.run_sync(writer.abort)
        return Response(status_code=400)
    except BaseException:
        await anyio.to_thread.run_sync(writer.abort)
        raise
    return max(0, lines + (last != b"\n") - 1) if fmt == "csv" else None


class _Refused(Exception):  # noqa: N818 - carries the response out of the upload loop
    def __init__(self, response: Response) -> None:
        self.response = response


def _check_parquet(tail: bytes) -> str | None:
    """A problem with an uploaded Parquet file, read from its footer (the file's last bytes): not Parquet,
    or no rows. None when it looks fine, or when its footer is larger than ``tail`` (the job reads it)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(tail) < 12 or tail[-4:] != b"PAR1":
        return ("the body is not a Parquet file (it does not end with Parquet's PAR1 footer); send a Parquet file "
                "as application/vnd.apache.parquet, or a CSV as text/csv")
    size = int.from_bytes(tail[-8:-4], "little")
    if size + 8 > len(tail):
        return None
    try:
        meta = pq.read_metadata(io.BytesIO(b"PAR1" + tail[-8 - size:]))
    except (pa.ArrowException, OSError) as exc:
        return f"the Parquet file's footer cannot be read ({exc}); write the file again"
    if meta.num_rows == 0:
        return "the Parquet file has no rows to score; send a file with rows"
    return None


def _check_header(head: bytes, columns: Any, answer_model: Any) -> str | None:
    import csv

    line = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    try:
        names = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return "the CSV header line cannot be read; the first line must name the columns"
    have = set(names)
    missing = [c.name for c in columns if c.name not in have and not c.nullable]
    if missing:
        return (f"the file lacks the column(s) {', '.join(missing)} the model needs; its inputs are: "
                f"{', '.join(c.name for c in columns)} (other columns pass through)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"the file has duplicate column names {dupes}; rename them"
    return None


async def _batch_or_404(request: Request, batch_id: str) -> jobs.Batch | Response:
    state = state_of(request)
    require_api_key(request)
    batch = await anyio.to_thread.run_sync(jobs.get_batch, state.engine, batch_id, _owner(request, state))
    if batch is None:
        return error_response(404, f"no batch {batch_id!r} of yours; use the batch_id POST /v1/models/{{name}}/batches returned")
    return batch


@router.get("/v1/batches/{batch_id}", summary="State and progress of a batch job")
async def get_batch(batch_id: str, request: Request) -> Response:
    batch = await _batch_or_404(request, batch_id)
    if isinstance(batch, Response):
        return batch
    state = state_of(request)
    if not batch.terminal and batch.dag_run_id:
        from datetime import UTC, datetime

        idle = (datetime.now(UTC) - batch.updated_at).total_seconds()
        if idle > state.settings.batch_stale_seconds:  # a task that died for good cannot say so itself
            batch = await anyio.to_thread.run_sync(_reconcile, state, batch)
    return JSONResponse(batch.public())


def _reconcile(state: ServingState, batch: jobs.Batch) -> jobs.Batch:
    assert batch.dag_run_id is not None
    try:
        run = get_dag_run(airflow_api(state.platform), jobs.BATCH_DAG_ID, batch.dag_run_id)
    except AirflowUnavailable as exc:
        logger.info("batch %s: cannot check its Airflow run (%s)", batch.batch_id, exc)
        return batch
    if run.state == "failed":
        jobs.finish(state.engine, batch.batch_id, "failed", f"its Airflow run failed: {run.url}")
    elif run.state == "success":  # the task ended without finishing the job (it cannot: it marks it)
        jobs.finish(state.engine, batch.batch_id, "failed", f"its Airflow run ended without finishing it: {run.url}")
    return jobs.get_batch(state.engine, batch.batch_id) or batch


@router.get("/v1/batches/{batch_id}/results", summary="The scored rows of a batch job (streamed)")
async def get_results(batch_id: str, request: Request) -> Response:
    batch = await _batch_or_404(request, batch_id)
    if isinstance(batch, Response):
        return batch
    state = state_of(request)
    if batch.chunks_done == 0 or (batch.output_format == "csv" and not batch.results_header):
        return error_response(409, f"batch {batch_id} has no scored rows yet (state {batch.state}); "
                                   "poll GET /v1/batches/{id} and download when rows_done > 0")
    blocks = jobs.result_blocks(_store(state), state.engine, batch)
    name = f"{batch.model_name}-{batch_id}.{batch.output_format}"
    return StreamingResponse(blocks, media_type=MEDIA[batch.output_format], headers={
        "Content-Disposition": f'attachment; filename="{name}"', "X-Batch-State": batch.state,
        "X-Batch-Complete": "true" if batch.state == "succeeded" else "false",
    })


@router.get("/v1/batches/{batch_id}/errors", summary="The rejected rows of a batch job with the reasons (CSV)")
async def get_errors(batch_id: str, request: Request) -> Response:
    batch = await _batch_or_404(request, batch_id)
    if isinstance(batch, Response):
        return batch
    state = state_of(request)
    if batch.rows_failed == 0:
        return Response(status_code=204)
    return StreamingResponse(jobs.error_blocks(_store(state), state.engine, batch), media_type=MEDIA["csv"],
                             headers={"Content-Disposition": f'attachment; filename="{batch_id}.errors.csv"'})


@router.post("/v1/batches/{batch_id}/cancel", status_code=202, summary="Cancel a batch job")
async def cancel_batch(batch_id: str, request: Request) -> Response:
    batch = await _batch_or_404(request, batch_id)
    if isinstance(batch, Response):
        return batch
    state = state_of(request)
    if batch.terminal:
        return JSONResponse(batch.public(), status_code=200)
    await anyio.to_thread.run_sync(jobs.request_cancel, state.engine, batch_id)
    now = await anyio.to_thread.run_sync(jobs.get_batch, state.engine, batch_id)
    assert now is not None
    return JSONResponse(now.public(), status_code=202)
