"""Batch scoring jobs, the results: a job's committed chunks streamed back as one results file
(CSV or Parquet, in the job's output format) and one errors file (see :mod:`serving.batch_jobs`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

from ledgerline.artifact_store import ArtifactStore
from serving.batch_jobs.table import Batch, ChunkRow, chunk_key, committed_chunks, errors_header_key, errors_key


def result_blocks(store: ArtifactStore, engine: Engine, batch: Batch) -> Iterator[bytes]:
    """The committed results as one file in the job's output format, streamed chunk by chunk."""
    chunks = [c for c in committed_chunks(engine, batch.batch_id) if c.scored]
    if batch.output_format == "csv":
        if batch.results_header:
            yield batch.results_header.encode()
        for c in chunks:
            yield from store.stream(chunk_key(batch.batch_id, c.chunk, "csv"))
        return
    yield from _parquet_stream(store, batch, chunks)


class _Sink:
    """A write-only file for pyarrow's ParquetWriter whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        b = bytes(data)
        self.parts.append(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _parquet_stream(store: ArtifactStore, batch: Batch, chunks: list[ChunkRow]) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    sink = _Sink()
    writer: Any = None
    schema = None
    for c in chunks:
        data = b"".join(store.stream(chunk_key(batch.batch_id, c.chunk, "parquet")))
        table = pq.read_table(io.BytesIO(data))
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(sink, schema)
        elif table.schema != schema:
            table = table.cast(schema)
        writer.write_table(table)
        yield sink.take()
    if writer is None:
        return
    writer.close()
    yield sink.take()


def error_blocks(store: ArtifactStore, engine: Engine, batch: Batch) -> Iterator[bytes]:
    chunks = [c for c in committed_chunks(engine, batch.batch_id) if c.failed]
    if not chunks:
        return
    yield from store.stream(errors_header_key(batch.batch_id))
    for c in chunks:
        yield from store.stream(errors_key(batch.batch_id, c.chunk))
