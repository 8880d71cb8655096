"""Raw data in a spec's shape: numbers and timestamps coerced, the target encoded by the spec's label
codec into ``LABEL_COLUMN``; junk is a DataError naming the column and examples, raised before
anything is validated or trained. (Re-exported by :mod:`features.spec`.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.labels import LABEL_COLUMN
from ledgerline.errors import DataError

if TYPE_CHECKING:
    from features.spec import DatasetSpec

# A column whose non-null values parse as numbers at least this often is numeric
# data with junk in it, not a categorical column.
NUMERIC_JUNK_THRESHOLD = 0.9


def is_numeric_series(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)



def junk_values(series: pd.Series, limit: int = 3) -> list[str]:
    """Non-null values of ``series`` that do not parse as numbers."""
    non_null = series.dropna()
    parsed = pd.to_numeric(non_null, errors="coerce")
    bad = non_null[parsed.isna()]
    return [str(v) for v in pd.unique(bad)[:limit]]


def looks_numeric_with_junk(series: pd.Series) -> bool:
    non_null = series.dropna()
    if non_null.empty or is_numeric_series(series):
        return False
    parsed = pd.to_numeric(non_null, errors="coerce")
    share = float(parsed.notna().mean())
    return NUMERIC_JUNK_THRESHOLD <= share < 1.0


def check_target(df: pd.DataFrame, target: str, positive_label: str | None) -> None:
    """The target exists, has exactly two classes, and the positive label is one of them."""
    if target not in df.columns:
        raise DataError(f"target column '{target}' is not in the data; columns are {list(df.columns)}")
    classes = sorted({str(v) for v in df[target].dropna().unique()})
    if len(classes) < 2:
        raise DataError(
            f"target column '{target}' has only one class ({classes}); a classifier needs both outcomes in the data"
        )
    if len(classes) > 2:
        raise DataError(
            f"target column '{target}' has {len(classes)} classes ({classes[:5]}...); this family needs a binary target"
        )
    if positive_label is None:
        raise DataError(f"no positive label given; pass --positive-label with one of {classes}")
    if str(positive_label) not in classes:
        raise DataError(
            f"positive label '{positive_label}' is not a value of '{target}'; use one of {classes}"
        )
    if df[target].isna().any():
        n = int(df[target].isna().sum())
        raise DataError(f"target column '{target}' has {n} missing values; drop those rows or fill them")


def coerce_numeric(series: pd.Series, name: str) -> pd.Series:
    """Numbers as float64; junk raises a DataError naming the column and examples."""
    if is_numeric_series(series) or pd.api.types.is_bool_dtype(series):
        out = series.astype("float64")
    else:
        out = pd.to_numeric(series, errors="coerce")
        bad_mask = out.isna() & series.notna()
        if bad_mask.any():
            raise DataError(
                f"column '{name}' is numeric but has non-numeric values {junk_values(series)}; "
                f"clean them, or declare '{name}' as categorical in a --spec file"
            )
        out = out.astype("float64")
    if np.isinf(out.to_numpy()).any():
        raise DataError(f"column '{name}' has infinite values; replace them with a number or leave them empty")
    return out


def conform(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The data in the spec's shape: feature columns coerced, the target encoded in LABEL_COLUMN by the
    spec's label codec (binary: 1 = the positive label; categories: the class index; numbers: float).

    Raises DataError for missing columns or junk, before anything is validated or trained.
    """
    if spec.target is not None:
        if spec.positive_label is not None:  # an event: two classes, the positive label one of them
            check_target(df, spec.target, spec.positive_label)
        elif spec.target not in df.columns:
            raise DataError(f"target column '{spec.target}' is not in the data; columns are {list(df.columns)}")
    missing = [c for c in (*spec.feature_names, *spec.passthrough) if c not in df.columns]
    if missing:
        raise DataError(f"the data lacks columns {missing} that the spec requires; columns are {list(df.columns)}")
    out = pd.DataFrame(index=df.index)
    if spec.id_column:
        if spec.id_column not in df.columns:
            raise DataError(f"id column '{spec.id_column}' is not in the data; columns are {list(df.columns)}")
        out[spec.id_column] = df[spec.id_column]
    for col in spec.columns:
        s = df[col.name]
        if col.kind == "numeric":
            out[col.name] = coerce_numeric(s, col.name)
        elif col.kind == "datetime":
            out[col.name] = coerce_datetime(s, col.name)
        else:
            out[col.name] = s.astype(str).astype("object").where(s.notna(), None)
    for name in spec.passthrough:
        out[name] = df[name]
    if spec.target is not None:
        codec = spec.label_codec
        out[spec.target] = codec.target_column(df[spec.target])
        out[LABEL_COLUMN] = codec.encode_training(df[spec.target])
    return out.reset_index(drop=True)


def coerce_datetime(series: pd.Series, name: str) -> pd.Series:
    """Timestamps as UTC datetimes (naive ones are taken as UTC); junk raises a DataError with examples."""
    if is_numeric_series(series):
        raise DataError(
            f"column '{name}' holds numbers; give timestamps as ISO 8601 text (e.g. 2026-03-01T14:05:00Z): "
            "an epoch number is ambiguous (seconds, milliseconds?)"
        )
    out = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
    bad = out.isna() & series.notna()
    if bad.any():
        examples = [str(v) for v in pd.unique(series[bad])[:3]]
        raise DataError(f"column '{name}' has values that are not timestamps {examples}; use ISO 8601 text")
    return out
