"""Cheap checks of an input file's path: no pandas, so the CLI can run them before any heavy import."""

from __future__ import annotations

from pathlib import Path

from ledgerline.errors import DataError

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def check_input_path(path: str | Path) -> Path:
    """The cheap checks of ``read_table`` (exists, a file, a supported type), for callers that
    want to fail before heavy imports or contacting servers."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} does not exist; check the path passed to --data")
    if p.is_dir():
        raise DataError(f"{p} is a folder; pass a .csv or .parquet file to --data")
    if p.suffix.lower() not in READERS:
        raise DataError(f"cannot read {p}: unsupported file type '{p.suffix}'; use .csv or .parquet")
    return p
