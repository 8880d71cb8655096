"""A model's data sources and window policy, as declared in YAML (``<spec-stem>.sources.yaml`` beside the
spec, ``ledgerline train --source FILE``) or as the retrain DAG's ``source`` param (the same mapping)::

    window: {kind: sliding, days: 28}      # or {kind: sliding, weeks: 4}, or {kind: expanding, start: 2026-01-01}
    base: data/loans_2025.parquet           # optional: a fixed file added to every window
    sources:
      - {kind: sql, url: "postgresql://reader@db/bank", query: "select * from loans
         where applied_at >= :start and applied_at < :end", chunksize: 50000}
      - {kind: sql, conn_id: bank_pg, query: "..."}   # an Airflow Connection (CLI: env AIRFLOW_CONN_BANK_PG)
      - {kind: files, path: "s3://bucket/loans/{ds}.parquet"}   # {ds}, {ds_nodash}, globs; missing: skip
      - {kind: predictions}                 # this model's labelled production traffic in the window

Everything is checked here, before any source is read: a bad key, kind or value is one
:class:`~ledgerline.errors.LedgerlineError` line naming the file (or param) and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from ledgerline.errors import LedgerlineError

SOURCE_KINDS = ("sql", "files", "predictions")
WINDOW_KINDS = ("sliding", "expanding")
DEFAULT_CHUNKSIZE = 50_000
#: the placeholders a files source's path may hold (the day of the window, UTC)
PATH_PLACEHOLDERS = ("ds", "ds_nodash")
SOURCES_SUFFIX = ".sources.yaml"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


class SourceConfigError(LedgerlineError):
    """A source config (YAML file or DAG param) that cannot be used as written."""


@dataclass(frozen=True)
class Window:
    """Which rows a run trains on: the last ``days`` before the run's end (sliding), or everything from
    ``start`` to it (expanding)."""

    kind: Literal["sliding", "expanding"]
    days: int | None = None
    start: date | None = None

    def describe(self) -> str:
        if self.kind == "sliding":
            return f"sliding {self.days} days"
        return f"expanding from {self.start}"


@dataclass(frozen=True)
class SqlSource:
    query: str
    url: str | None = None  # a SQLAlchemy URL (CLI); its password is never shown
    conn_id: str | None = None  # an Airflow Connection id (env AIRFLOW_CONN_<ID> outside Airflow)
    chunksize: int = DEFAULT_CHUNKSIZE
    name: str | None = None
    kind: Literal["sql"] = "sql"

    def detail(self) -> str:
        if self.conn_id:
            return self.conn_id
        from training.sources.sql import masked_url

        return masked_url(self.url or "")


@dataclass(frozen=True)
class FilesSource:
    path: str  # local path or s3://bucket/key, with {ds}/{ds_nodash} and glob characters
    missing: Literal["error", "skip"] = "error"  # a day's file missing (a path without a glob)
    format: Literal["csv", "parquet"] | None = None  # default: from the extension
    time_column: str | None = None  # keep only rows whose time lies in the window
    name: str | None = None
    kind: Literal["files"] = "files"

    def detail(self) -> str:
        return self.path


@dataclass(frozen=True)
class PredictionsSource:
    name: str | None = None
    kind: Literal["predictions"] = "predictions"

    def detail(self) -> str:
        return ""


Source = SqlSource | FilesSource | PredictionsSource


@dataclass(frozen=True)
class SourceConfig:
    window: Window
    sources: tuple[Source, ...]
    base: str | None = None  # a fixed CSV/Parquet file (local path) added to every window
    origin: str = "source config"  # where it came from, for messages
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_mapping(cls, data: Any, *, origin: str = "source config", base_dir: Path | None = None) -> SourceConfig:
        """The config from a mapping (parsed YAML or a DAG param); SourceConfigError names what to fix.

        A relative ``base`` or local files ``path`` is taken relative to ``base_dir`` (the YAML file's folder).
        """
        if not isinstance(data, Mapping):
            raise SourceConfigError(f"{origin} must be a mapping with window and sources, not {type(data).__name__}")
        _known(data, ("window", "base", "sources"), origin)
        window = _window(data.get("window"), origin)
        items = data.get("sources")
        if not isinstance(items, list) or not items:
            raise SourceConfigError(
                f"{origin}: sources must be a non-empty list, e.g. [{{kind: sql, url: ..., query: ...}}, {{kind: predictions}}]"
            )
        sources = tuple(_source(item, i, origin, base_dir) for i, item in enumerate(items, start=1))
        if sum(isinstance(s, PredictionsSource) for s in sources) > 1:
            raise SourceConfigError(f"{origin}: give {{kind: predictions}} once (it reads the whole window)")
        keys = [source_key(s, sources) for s in sources]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise SourceConfigError(f"{origin}: source names {dupes} are used twice; give each source its own name")
        base = data.get("base")
        if base is not None:
            if not isinstance(base, str) or not base.strip():
                raise SourceConfigError(f"{origin}: base must be the path of a CSV or Parquet file")
            base = _local(base.strip(), base_dir)
        return cls(window=window, sources=sources, base=base, origin=origin, raw=dict(data))

    def describe(self) -> str:
        parts = [f"{source_key(s, self.sources)}={s.kind}" + (f":{s.detail()}" if s.detail() else "") for s in self.sources]
        if self.base:
            parts.insert(0, f"base={self.base}")
        return f"{self.window.describe()}; " + ", ".join(parts)


def source_key(source: Source, sources: tuple[Source, ...]) -> str:
    """The source's short key in lineage tags and counts: its name, else its kind (``sql_2`` when several
    sources share a kind: the kind and its position in the list)."""
    if source.name:
        return source.name
    same = [s for s in sources if s.kind == source.kind and not s.name]
    if len(same) == 1:
        return source.kind
    position = next(i for i, s in enumerate(sources) if s is source)  # by identity: two sources may be equal
    return f"{source.kind}_{position + 1}"


def load_source_config(path: str | Path) -> SourceConfig:
    """The source config in a YAML file; SourceConfigError for a missing file or bad YAML."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SourceConfigError(f"source config {p} does not exist; check the path passed to --source")
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceConfigError(f"cannot read source config {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise SourceConfigError(f"source config {p} is not valid YAML: {first}") from exc
    return SourceConfig.from_mapping(data, origin=f"source config {p}", base_dir=p.resolve().parent)


def beside_spec(spec_path: str | Path | None) -> Path | None:
    """``<spec-stem>.sources.yaml`` beside the spec file, when there is one."""
    if not spec_path:
        return None
    p = Path(spec_path)
    candidate = p.with_name(p.stem + SOURCES_SUFFIX)
    return candidate if candidate.is_file() else None


def source_config(value: SourceConfig | Mapping[str, Any] | str | Path | None) -> SourceConfig | None:
    """A config from what a caller has: a config, a mapping (DAG param), a JSON text or a YAML path."""
    if value is None or value == "":
        return None
    if isinstance(value, SourceConfig):
        return value
    if isinstance(value, Mapping):
        return SourceConfig.from_mapping(value, origin="source param")
    text = str(value).strip()
    if text.startswith("{"):
        import json

        try:
            return SourceConfig.from_mapping(json.loads(text), origin="source param")
        except ValueError as exc:
            raise SourceConfigError(f"source param is not a JSON object: {exc}") from exc
    return load_source_config(text)


# --------------------------------------------------------------------------- parsing


def _known(data: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise SourceConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(keys)}")


def _window(data: Any, origin: str) -> Window:
    example = "window: {kind: sliding, days: 28} (or weeks: 4), or {kind: expanding, start: 2026-01-01}"
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{origin}: window is missing or not a mapping; add {example}")
    where = f"{origin}: window"
    kind = data.get("kind")
    if kind not in WINDOW_KINDS:
        raise SourceConfigError(f"{where} kind must be one of {list(WINDOW_KINDS)}, not {kind!r}; e.g. {example}")
    if kind == "sliding":
        _known(data, ("kind", "days", "weeks"), where)
        if ("days" in data) == ("weeks" in data):
            raise SourceConfigError(f"{where}: a sliding window takes one of days or weeks, e.g. {{kind: sliding, days: 28}}")
        unit = "days" if "days" in data else "weeks"
        n = data[unit]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SourceConfigError(f"{where} {unit} must be a whole number of at least 1, not {n!r}")
        return Window("sliding", days=n * (7 if unit == "weeks" else 1))
    _known(data, ("kind", "start"), where)
    start = data.get("start")
    if isinstance(start, str):
        try:
            start = date.fromisoformat(start.strip())
        except ValueError:
            start = None
    if not isinstance(start, date):
        raise SourceConfigError(f"{where}: an expanding window needs start: YYYY-MM-DD (the first day it holds)")
    return Window("expanding", start=start if not hasattr(start, "date") else start.date())  # type: ignore[attr-defined]


def _text(item: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            raise SourceConfigError(f"{where} needs {key}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise SourceConfigError(f"{where}: {key} must be a non-empty string, not {value!r}")
    return value.strip()


def _source(item: Any, index: int, origin: str, base_dir: Path | None) -> Source:
    where = f"{origin}: source {index}"
    if not isinstance(item, Mapping):
        raise SourceConfigError(f"{where} must be a mapping with a kind ({', '.join(SOURCE_KINDS)})")
    kind = item.get("kind")
    if kind not in SOURCE_KINDS:
        raise SourceConfigError(f"{where}: kind must be one of {list(SOURCE_KINDS)}, not {kind!r}")
    where = f"{where} ({kind})"
    name = _text(item, "name", where)
    if name is not None and (not _NAME.match(name) or name == "base"):
        raise SourceConfigError(f"{where}: name {name!r} must be 1-40 lower-case letters, digits or _, starting with a letter")
    if kind == "sql":
        _known(item, ("kind", "name", "url", "conn_id", "query", "chunksize"), where)
        url, conn_id = _text(item, "url", where), _text(item, "conn_id", where)
        if (url is None) == (conn_id is None):
            raise SourceConfigError(f"{where} takes one of url (a SQLAlchemy URL) or conn_id (an Airflow Connection)")
        if conn_id is not None and not _CONN_ID.match(conn_id):
            raise SourceConfigError(f"{where}: conn_id {conn_id!r} is not an Airflow connection id")
        if url is not None:
            from training.sources.sql import check_url

            check_url(url, where)
        query = _text(item, "query", where, required=True)
        chunksize = item.get("chunksize", DEFAULT_CHUNKSIZE)
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise SourceConfigError(f"{where}: chunksize must be a whole number of rows of at least 1, not {chunksize!r}")
        assert query is not None
        return SqlSource(query=query, url=url, conn_id=conn_id, chunksize=chunksize, name=name)
    if kind == "files":
        _known(item, ("kind", "name", "path", "missing", "format", "time_column"), where)
        path = _text(item, "path", where, required=True)
        assert path is not None
        bad = sorted({p for p in _PLACEHOLDER.findall(path) if p not in PATH_PLACEHOLDERS})
        if bad:
            raise SourceConfigError(f"{where}: path placeholder(s) {bad} unknown; use {{ds}} (2026-10-05) or {{ds_nodash}} (20261005)")
        missing = item.get("missing", "error")
        if missing not in ("error", "skip"):
            raise SourceConfigError(f"{where}: missing must be error or skip, not {missing!r}")
        fmt = item.get("format")
        if fmt is not None and fmt not in ("csv", "parquet"):
            raise SourceConfigError(f"{where}: format must be csv or parquet, not {fmt!r}")
        if fmt is None:
            stem = _PLACEHOLDER.sub("", path).lower()
            if not stem.endswith((".csv", ".parquet", ".pq")):
                raise SourceConfigError(f"{where}: cannot tell the format of {path}; end it in .csv or .parquet or add format")
        return FilesSource(path=_local(path, base_dir), missing=missing, format=fmt,
                           time_column=_text(item, "time_column", where), name=name)
    _known(item, ("kind", "name"), where)
    return PredictionsSource(name=name)


def _local(path: str, base_dir: Path | None) -> str:
    """A relative local path made absolute against ``base_dir`` (the YAML file's folder); URLs unchanged."""
    if "://" in path or base_dir is None or Path(path).is_absolute():
        return path
    return str(base_dir / path)
