"""Reading raw data and writing immutable snapshots keyed by logical date.

A snapshot lives at ``<data_dir>/snapshots/<dataset>/<logical_date>/`` with
``data.parquet`` and ``manifest.json`` (row count, columns, SHA-256 of the content).
It is written to a temporary folder and renamed into place, so a crash leaves
nothing half-written. Ingesting the same content for the same date again returns
the existing snapshot; different content for an existing date is refused, unless the
existing snapshot failed validation (``rejected.json`` beside its manifest): then it is
moved to ``<dataset>/.rejected/`` and the new content takes its place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from features.paths import READERS, check_input_path
from ledgerline.errors import DataError, SnapshotConflict
from ledgerline.names import check_model_name

logger = logging.getLogger(__name__)

REJECTED_FILE = "rejected.json"  # beside manifest.json when the snapshot failed validation


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, with one-line errors for the usual mistakes."""
    p = check_input_path(path)
    kind = READERS[p.suffix.lower()]
    try:
        if kind == "csv":
            _check_csv_header(p)
            df = pd.read_csv(p, low_memory=False)
        else:
            _check_parquet_schema(p)
            df = pd.read_parquet(p)
    except PermissionError as exc:
        raise DataError(f"cannot read {p}: permission denied") from exc
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {p} as {kind}: {first}") from exc
    if df.empty:
        raise DataError(f"{p} has no rows")
    return df


def _check_csv_header(p: Path) -> None:
    """pandas renames a repeated header ``a`` to ``a.1``; refuse instead of training on a renamed column."""
    import csv

    with p.open(newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    seen: set[str] = set()
    dupes = [c for c in (h.strip() for h in header) if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
    if dupes:
        raise DataError(f"{p} has duplicate column names {sorted(set(dupes))}; rename or remove the repeated columns")


def _check_parquet_schema(p: Path) -> None:
    """Nested columns (lists, structs, maps) are not tabular features; name them before reading the data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(p)
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise DataError(
            f"{p} has nested columns {nested} (lists, structs or maps); flatten them into plain columns first"
        )
    names = [str(n) for n in schema.names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{p} has duplicate column names {dupes}; rename or remove the repeated columns")


def frame_digest(df: pd.DataFrame) -> str:
    """A content hash independent of how the frame was produced (columns, dtypes, values)."""
    h = hashlib.sha256()
    h.update(json.dumps([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    logical_date: str
    path: Path
    digest: str
    rows: int
    created: bool  # False when an identical snapshot already existed

    @property
    def uri(self) -> str:
        return str(self.path / "data.parquet")

    def load(self) -> pd.DataFrame:
        return pd.read_parquet(self.uri)


def date_key(logical_date: str | date | datetime | None) -> str:
    if logical_date is None:
        return datetime.now(UTC).date().isoformat()
    if isinstance(logical_date, datetime):
        return logical_date.date().isoformat()
    if isinstance(logical_date, date):
        return logical_date.isoformat()
    try:
        return date.fromisoformat(str(logical_date)[:10]).isoformat()
    except ValueError as exc:
        raise DataError(f"logical date '{logical_date}' is not a date; use YYYY-MM-DD") from exc


def ingest(
    df: pd.DataFrame,
    *,
    dataset: str,
    data_dir: Path,
    logical_date: str | date | datetime | None = None,
    source: str = "",
    key: str | None = None,
    lineage: dict[str, str] | None = None,
) -> Snapshot:
    """Write ``df`` as the immutable snapshot of ``dataset`` for ``logical_date`` (idempotent).

    ``key`` names the snapshot's folder instead of the logical date (a data window that does not end at the
    end of its date, e.g. ``2026-10-12T0300Z``); ``lineage`` (run tags, e.g. rows per data source) is kept
    in the manifest for the run that validates the snapshot.
    """
    check_model_name(dataset, what="dataset name")
    if key is not None:
        check_model_name(key, what="snapshot key")
    key = key or date_key(logical_date)
    target = Path(data_dir) / "snapshots" / dataset / key
    frame = df.reset_index(drop=True)
    digest = frame_digest(frame)
    replaces_rejected = False
    if target.exists():
        manifest = json.loads((target / "manifest.json").read_text())
        if manifest["digest"] == digest:
            logger.info("snapshot %s@%s exists with the same content; reusing it", dataset, key)
            return Snapshot(dataset, key, target, digest, int(manifest["rows"]), created=False)
        if not (target / REJECTED_FILE).exists():
            raise SnapshotConflict(
                f"snapshot {dataset}@{key} already exists with different content ({manifest['rows']} rows); "
                f"snapshots are immutable: use another --logical-date, or delete {target} deliberately"
            )
        replaces_rejected = True  # a snapshot that failed validation never stands in the way of a fixed one

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        frame.to_parquet(tmp / "data.parquet", index=False)
        manifest = {
            "dataset": dataset,
            "logical_date": key,
            "rows": len(frame),
            "columns": [str(c) for c in frame.columns],
            "digest": digest,
            "source": source,
            **({"lineage": dict(lineage)} if lineage else {}),
            "created_at": datetime.now(UTC).isoformat(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if replaces_rejected:
            _set_aside_rejected(target)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another writer won the race: the existing snapshot must hold the same content.
            if target.exists():
                shutil.rmtree(tmp, ignore_errors=True)
                return ingest(df, dataset=dataset, data_dir=data_dir, logical_date=key, source=source, key=key,
                              lineage=lineage)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote snapshot %s@%s (%d rows)", dataset, key, len(frame))
    return Snapshot(dataset, key, target, digest, len(frame), created=True)


def mark_rejected(snapshot: Snapshot, reason: str) -> None:
    """Record that ``snapshot`` failed validation: corrected data for its date may then replace it."""
    record = {"digest": snapshot.digest, "reason": reason, "rejected_at": datetime.now(UTC).isoformat()}
    (snapshot.path / REJECTED_FILE).write_text(json.dumps(record, indent=2))


def clear_rejected(snapshot: Snapshot) -> None:
    """The snapshot passed validation (e.g. under a corrected spec): it is immutable again."""
    (snapshot.path / REJECTED_FILE).unlink(missing_ok=True)


def is_rejected(snapshot: Snapshot) -> bool:
    return (snapshot.path / REJECTED_FILE).exists()


def _set_aside_rejected(target: Path) -> None:
    """Move a rejected snapshot to ``<dataset>/.rejected/<date>-<digest>/`` (kept as evidence)."""
    manifest = json.loads((target / "manifest.json").read_text())
    aside = target.parent / ".rejected" / f"{target.name}-{manifest['digest'][:12]}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    if aside.exists():
        shutil.rmtree(target)
    else:
        os.rename(target, aside)
    logger.info("rejected snapshot %s moved to %s", target, aside)


def snapshot_from_uri(uri: str | Path) -> Snapshot:
    """The Snapshot behind a ``.../<date>/data.parquet`` URI (or its folder), from its manifest."""
    p = Path(uri)
    folder = p if p.is_dir() else p.parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{uri} is not a Ledgerline snapshot (no manifest.json beside it)") from exc
    return Snapshot(manifest["dataset"], manifest["logical_date"], folder, manifest["digest"], int(manifest["rows"]), False)


def snapshot_lineage(snapshot: Snapshot) -> dict[str, str]:
    """The run tags the snapshot's manifest keeps (e.g. its data window and rows per source); {} for none."""
    try:
        manifest = json.loads((snapshot.path / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in (manifest.get("lineage") or {}).items()}


def load_snapshot(uri: str | Path) -> pd.DataFrame:
    p = Path(uri)
    if p.is_dir():
        p = p / "data.parquet"
    if not p.exists():
        raise DataError(f"snapshot {p} does not exist")
    return pd.read_parquet(p)
