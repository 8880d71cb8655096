"""What the prediction log keeps on disk when the database cannot take its rows: the spill files
written at shutdown (``unwritten-*.jsonl``, re-queued by the next start) and the dead letters
(``refused-*.jsonl``: rows the database refused for their content). One JSON object per row.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.store import LogEntry

logger = logging.getLogger("serving.predlog")


def dead_letter(spill_dir: Path | None, entries: Sequence[LogEntry]) -> Path | None:
    """Rows the database refused, appended to a ``refused-*.jsonl`` file; None without a spill folder."""
    if spill_dir is None:
        return None
    try:
        spill_dir.mkdir(parents=True, exist_ok=True)
        path = spill_dir / f"refused-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}.jsonl"
        with path.open("a") as fh:
            write_jsonl(fh, entries)
        return path
    except OSError:
        logger.exception("prediction log: cannot write the refused rows to %s", spill_dir)
        return None


def spill(spill_dir: Path | None, entries: Sequence[LogEntry]) -> None:
    """At shutdown: rows that could not be written go to an ``unwritten-*.jsonl`` file (the next start reads it)."""
    rows = sum(e.rows for e in entries)
    if not entries:
        return
    if spill_dir is None:
        logger.error("prediction log: %d rows could not be written before shutdown and are lost", rows)
        return
    try:
        spill_dir.mkdir(parents=True, exist_ok=True)
        path = spill_dir / f"unwritten-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}.jsonl"
        with path.open("w") as fh:
            write_jsonl(fh, entries)
    except OSError:
        logger.exception("prediction log: %d rows could not be written nor spilled to %s", rows, spill_dir)
        return
    logger.error(
        "prediction log: database unavailable at shutdown; %d rows spilled to %s (written on the next start)",
        rows,
        path,
    )


def claim_spills(spill_dir: Path | None) -> Iterator[tuple[Path, list[LogEntry]]]:
    """Each spill file of an earlier shutdown, claimed by renaming it (one worker gets each), with its rows.

    The caller deletes the claimed file once its rows are written.
    """
    if spill_dir is None or not spill_dir.is_dir():
        return
    for path in sorted(spill_dir.glob("unwritten-*.jsonl")):
        claimed = path.with_suffix(f".loading-{os.getpid()}")
        try:
            path.rename(claimed)  # one worker claims each file
        except OSError:
            continue
        entries = read_jsonl(claimed)
        yield claimed, entries
        logger.warning("prediction log: re-queued %d rows spilled at an earlier shutdown (%s)", len(entries), path)


def read_jsonl(path: Path) -> list[LogEntry]:
    """The rows of a spill file, one entry per row."""
    entries = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        entries.append(
            LogEntry(
                r["model_name"],
                r["model_version"],
                datetime.fromisoformat(r["created_at"]),
                [r["prediction_id"]],
                [r["inputs"]],
                [r["outputs"]],
                [r["score"]],
                r["latency_ms"],
            )
        )
    return entries


def write_jsonl(fh: Any, entries: Sequence[LogEntry]) -> None:
    for e in entries:
        for pid, inp, out, s in zip(e.ids, e.inputs, e.outputs, e.scores, strict=True):
            row = {
                "prediction_id": pid,
                "model_name": e.model_name,
                "model_version": e.model_version,
                "created_at": e.created_at.isoformat(),
                "inputs": inp,
                "outputs": out,
                "score": s,
                "latency_ms": e.latency_ms,
            }
            fh.write(json.dumps(row, default=str) + "\n")
