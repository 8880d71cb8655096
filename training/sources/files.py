"""The ``files`` source: CSV or Parquet files on local disk or S3, named by a path template.

``{ds}`` (``2026-10-05``) and ``{ds_nodash}`` (``20261005``) are expanded for every UTC day of the
window; a path may hold glob characters (``*``, ``?``, ``[...]``), matched per day. A path without
placeholders names the same files every run (give ``time_column`` to keep only the window's rows).

Missing partitions: a path WITHOUT glob characters names one file per day, and a missing one is an
error naming it (a day that never arrived must not train silently on less data), unless the source
says ``missing: skip``. A glob that matches nothing on a day is no error (no files that day).

S3 uses boto3 with the artifact store's endpoint (``LEDGERLINE_S3_ENDPOINT_URL``, else
``MLFLOW_S3_ENDPOINT_URL``) and the usual ``AWS_*`` credentials.
"""

from __future__ import annotations

import fnmatch
import glob as globbing
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    import pandas as pd

    from ledgerline.settings import Settings
    from training.sources.config import FilesSource
    from training.sources.window import Interval

logger = logging.getLogger(__name__)

GLOB_CHARS = ("*", "?", "[")


def has_glob(path: str) -> bool:
    return any(ch in path for ch in GLOB_CHARS)


def expand(template: str, interval: Interval) -> list[str]:
    """The template for every day of the window (once when it has no placeholder), in day order."""
    if "{" not in template:
        return [template]
    out: list[str] = []
    for day in interval.days():
        path = template.replace("{ds}", day.isoformat()).replace("{ds_nodash}", day.strftime("%Y%m%d"))
        if path not in out:
            out.append(path)
    return out


class _S3:
    def __init__(self, endpoint_url: str | None) -> None:
        import boto3

        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key

    def matches(self, pattern: str) -> list[str]:
        bucket, key = self.split(pattern)
        cut = min((key.index(ch) for ch in GLOB_CHARS if ch in key), default=len(key))
        prefix = key[:cut]
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", []) if fnmatch.fnmatchcase(o["Key"], key)]
        return [f"s3://{bucket}/{k}" for k in sorted(found)]

    def exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self.split(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self, uri: str) -> bytes:
        bucket, key = self.split(uri)
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())


def list_files(source: FilesSource, interval: Interval, s3: _S3 | None) -> list[str]:
    """The files of the window, in day order (then name order within a day's glob)."""
    out: list[str] = []
    for path in expand(source.path, interval):
        if has_glob(path):
            found = s3.matches(path) if s3 is not None else sorted(globbing.glob(path))
            out += [f for f in found if f not in out]
            continue
        present = s3.exists(path) if s3 is not None else Path(path).is_file()
        if present:
            out.append(path)
        elif source.missing == "error":
            raise LedgerlineError(
                f"{path} does not exist (a missing partition); add it, or give the source missing: skip"
            )
        else:
            logger.info("files source: %s is missing; skipped (missing: skip)", path)
    return out


def _format(source: FilesSource, path: str) -> str:
    if source.format:
        return source.format
    return "csv" if path.lower().endswith(".csv") else "parquet"


def _read_one(source: FilesSource, path: str, s3: _S3 | None) -> pd.DataFrame:
    import pandas as pd

    handle: Any = io.BytesIO(s3.read(path)) if s3 is not None else path
    if _format(source, path) == "csv":
        try:
            return pd.read_csv(handle, low_memory=False)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
    return pd.read_parquet(handle)


def read_files(settings: Settings, source: FilesSource, interval: Interval) -> tuple[pd.DataFrame, list[str]]:
    """The rows of the window's files (and the files read); errors propagate (the caller names the source)."""
    import pandas as pd

    s3 = _S3(settings.s3_endpoint_url) if source.path.startswith("s3://") else None
    files = list_files(source, interval, s3)
    frames = []
    for path in files:
        try:
            frame = _read_one(source, path, s3)
        except LedgerlineError:
            raise
        except Exception as exc:  # noqa: BLE001 - a reader's error, named with the file
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise LedgerlineError(f"cannot read {path}: {first}") from exc
        frames.append(frame)
    pairs = [(path, f) for path, f in zip(files, frames, strict=True) if len(f.columns)]
    if not pairs:
        return pd.DataFrame(), files
    first_path, first = pairs[0]
    for path, f in pairs[1:]:
        differ = sorted(set(map(str, f.columns)) ^ set(map(str, first.columns)))
        if differ:
            raise LedgerlineError(f"{path} and {first_path} differ in columns {differ}; every file needs the same columns")
    frame = pd.concat([f[list(first.columns)] for _, f in pairs], ignore_index=True)
    if source.time_column:
        if source.time_column not in frame.columns:
            raise LedgerlineError(f"time_column '{source.time_column}' is not a column of {files[0]}")
        ts = pd.to_datetime(frame[source.time_column], utc=True, errors="coerce")
        frame = frame[(ts >= interval.start) & (ts < interval.end)].reset_index(drop=True)
    return frame, files
