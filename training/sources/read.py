"""Reading a window: every source for the interval, the base file, one frame in a deterministic order.

* Columns must agree: every ``sql``/``files`` source (and the base) has the same column set as the first
  one with columns; the ``predictions`` rows take the others' columns (and their types), a column of the
  others they lack is null.
* The frame is sorted by a hash of each row, so the same rows give the same frame (and snapshot digest)
  whatever order a database or a bucket listing returned them in.
* All sources empty (the base aside): :class:`~ledgerline.errors.NothingNew`, not an error.
* A source that fails: :class:`~ledgerline.errors.SourceError`, one line
  ``source 2 (sql bank_pg) for 2026-10-05..2026-10-12: <first line of the cause>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledgerline.errors import LedgerlineError, NothingNew, SourceError
from training.sources.config import FilesSource, PredictionsSource, Source, SourceConfig, SqlSource, source_key
from training.sources.window import Interval

if TYPE_CHECKING:
    import pandas as pd

    from features.spec import DatasetSpec
    from ledgerline.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowRead:
    frame: pd.DataFrame
    counts: dict[str, int]  # rows per source key ("base" for the base file)
    description: str  # for the snapshot manifest and messages
    interval: Interval | None = None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def source_label(index: int, source: Source) -> str:
    detail = source.detail()
    return f"source {index} ({source.kind}{' ' + detail if detail else ''})"


def _read_source(
    settings: Settings, source: Source, interval: Interval, *, model_name: str, family: str, spec: DatasetSpec | None
) -> pd.DataFrame:
    if isinstance(source, SqlSource):
        from training.sources.sql import read_sql

        return read_sql(source, interval)
    if isinstance(source, FilesSource):
        from training.sources.files import read_files

        return read_files(settings, source, interval)[0]
    return read_production(settings, model_name=model_name, family=family, spec=spec, interval=interval)


def read_production(
    settings: Settings, *, model_name: str, family: str, spec: DatasetSpec | None, interval: Interval
) -> pd.DataFrame:
    """The model's labelled production rows in the window, through the family's hook. Without a spec
    (``spec`` None and none frozen for the model: it was never trained, so never served) there are none."""
    import pandas as pd

    from training.family import get_family
    from training.sources.predictions import labelled_predictions

    if spec is None:
        from training.inputs import frozen_spec

        found = frozen_spec(settings, model_name)
        if found is None:
            logger.info("predictions source: %s has no spec yet (never trained): no production rows", model_name)
            return pd.DataFrame()
        spec = found[0]
    labelled = labelled_predictions(settings.resolved_app_db_url(), model_name, interval)
    return get_family(family).production_rows(settings, model_name, spec, labelled, interval=interval)


def read_window(
    settings: Settings,
    config: SourceConfig,
    *,
    model_name: str,
    family: str,
    interval: Interval,
    spec: DatasetSpec | None = None,
) -> WindowRead:
    """Every source of ``config`` for ``interval``, with the base file, as one frame (see the module doc).

    ``spec`` is the model's spec for the predictions source (default: the one frozen for ``model_name``).
    """

    parts: list[tuple[str, str, pd.DataFrame, bool]] = []  # key, label, frame, is predictions
    counts: dict[str, int] = {}
    if config.base:
        from features.sources import read_table

        try:
            base = read_table(config.base)
        except LedgerlineError as exc:
            raise SourceError(f"base {config.base} for {interval.label()}: {first_line(exc)}") from exc
        parts.append(("base", f"base {config.base}", base, False))
        counts["base"] = len(base)
    for i, source in enumerate(config.sources, start=1):
        label = source_label(i, source)
        try:
            frame = _read_source(settings, source, interval, model_name=model_name, family=family, spec=spec)
        except Exception as exc:  # noqa: BLE001 - whatever a driver, a reader or S3 raises: one line naming the source
            message = first_line(exc)
            if isinstance(source, SqlSource):
                from training.sources.sql import clean_message

                message = clean_message(message, source)
            raise SourceError(f"{label} for {interval.label()}: {message}") from exc
        key = source_key(source, config.sources)
        counts[key] = len(frame)
        parts.append((key, label, frame, isinstance(source, PredictionsSource)))
        logger.info("%s for %s: %d rows", label, interval.label(), len(frame))
    new_rows = sum(counts[source_key(s, config.sources)] for s in config.sources)
    description = (
        f"window {interval.label()} ({config.window.describe()}): "
        + ", ".join(f"{k} {n} rows" for k, n in counts.items())
    )
    if new_rows == 0:
        raise NothingNew(
            f"nothing new: no rows in the window {interval.label()} ({config.window.describe()}) from "
            + ", ".join(label for key, label, _, _ in parts if key != "base")
        )
    frame = combine(parts, interval)
    return WindowRead(frame=frame, counts=counts, description=description, interval=interval)


def combine(parts: list[tuple[str, str, pd.DataFrame, bool]], interval: Interval) -> pd.DataFrame:
    """The parts as one frame with the columns of the first part that has columns (see the module doc)."""
    import pandas as pd

    reference: tuple[str, pd.DataFrame] | None = None
    for _, label, frame, production in parts:
        if production or not len(frame.columns):
            continue
        if reference is None:
            reference = (label, frame)
            continue
        ref_cols, cols = set(map(str, reference[1].columns)), set(map(str, frame.columns))
        if cols != ref_cols:
            raise SourceError(
                f"{label} for {interval.label()}: its columns differ from those of {reference[0]}"
                + _difference(ref_cols, cols)
            )
    frames: list[pd.DataFrame] = []
    for _, label, frame, production in parts:
        if not len(frame):
            continue
        if reference is not None:
            frame = _align(frame, reference[1], label, interval) if production else frame[list(reference[1].columns)]
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    out = _plain_objects(out)
    order = pd.util.hash_pandas_object(out, index=False).to_numpy().argsort(kind="stable")
    return out.iloc[order].reset_index(drop=True)


def _difference(ref: set[str], cols: set[str]) -> str:
    lacks, extra = sorted(ref - cols), sorted(cols - ref)
    parts = ([f"lacks {lacks}"] if lacks else []) + ([f"has {extra} besides"] if extra else [])
    return ": it " + " and ".join(parts) + "; every source must give the same columns"


def _align(frame: pd.DataFrame, reference: pd.DataFrame, label: str, interval: Interval) -> pd.DataFrame:
    """Production rows in the reference's columns and, where they convert, its types."""
    import pandas as pd

    extra = sorted(set(map(str, frame.columns)) - set(map(str, reference.columns)))
    if extra:
        raise SourceError(
            f"{label} for {interval.label()}: the model's inputs {extra} are not columns of the other sources; "
            "a model's columns are fixed: give the other sources these columns"
        )
    out = pd.DataFrame(index=frame.index)
    for name in reference.columns:
        if name not in frame.columns:
            out[name] = pd.Series([None] * len(frame), index=frame.index, dtype=reference[name].dtype
                                  if not pd.api.types.is_integer_dtype(reference[name]) else "float64")
            continue
        out[name] = _like(frame[name], reference[name])
    return out


def _like(values: pd.Series, reference: pd.Series) -> pd.Series:
    """``values`` in the type of ``reference`` where they convert without loss; else unchanged."""
    import pandas as pd

    kind = reference.dtype
    try:
        if pd.api.types.is_bool_dtype(kind):
            mapped = values.map(lambda v: {"true": True, "false": False, "1": True, "0": False}.get(str(v).lower(), v))
            return mapped.astype(bool) if mapped.map(lambda v: isinstance(v, bool)).all() else values
        if pd.api.types.is_numeric_dtype(kind):
            numbers = pd.to_numeric(values, errors="coerce")
            if int((numbers.isna() & values.notna()).sum()):
                return values  # junk stays visible: the family's conform names it
            if pd.api.types.is_integer_dtype(kind) and numbers.notna().all() and (numbers == numbers.round()).all():
                return numbers.astype(kind)
            return numbers.astype("float64")
        if pd.api.types.is_datetime64_any_dtype(kind):
            tz = getattr(kind, "tz", None)
            stamps = pd.to_datetime(values, utc=True, errors="coerce")
            if int((stamps.isna() & values.notna()).sum()):
                return values
            return stamps.dt.tz_convert(tz) if tz is not None else stamps.dt.tz_localize(None)
    except (TypeError, ValueError):
        return values
    return values


def _plain_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose values mix Python types (e.g. 1 and "1") as text, so Parquet can store them."""
    import pandas as pd

    out = frame
    for name in frame.columns:
        col = frame[name]
        if col.dtype != object:
            continue
        kinds = {type(v) for v in col.dropna().tolist()}
        if len(kinds) > 1:
            if out is frame:
                out = frame.copy()
            out[name] = col.map(lambda v: v if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    return out

