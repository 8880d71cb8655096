"""A spec inferred from a first snapshot: types, ranges and domains from the data, the user's YAML
(a :class:`features.spec.PartialSpec`) winning over inference. (Re-exported by :mod:`features.spec`.)"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from features.conform import check_target, coerce_numeric, is_numeric_series, junk_values, looks_numeric_with_junk
from features.labels import LabelCodec, LabelKind, NumericCodec
from ledgerline.errors import DataError, SpecError

if TYPE_CHECKING:
    from features.spec import DatasetSpec, PartialSpec

MAX_CATEGORIES = 50


def widen(lo: float, hi: float) -> tuple[float, float]:
    """Ranges seen at the first snapshot, widened so next week's data is not rejected for noise."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    new_lo = lo - 0.25 * span
    new_hi = hi + 0.25 * span
    if lo >= 0 > new_lo:  # a non-negative column stays non-negative
        new_lo = 0.0
    return float(new_lo), float(new_hi)


def infer_spec(
    df: pd.DataFrame,
    *,
    target: str | None = None,
    positive_label: str | None = None,
    partial: PartialSpec | None = None,
    name: str = "dataset",
    target_kind: LabelKind = "binary",
) -> DatasetSpec:
    """Infer a full spec from a first snapshot; anything in ``partial`` wins over inference.

    ``target_kind`` is the family's (the spec's ``target_kind`` wins): ``binary`` needs a positive
    label; ``numeric`` (regression) takes a target of finite numbers and no positive label. Columns a
    role names (``partial.roles``) stay features; a column the YAML types as ``datetime`` is one.
    """
    from features.spec import ColumnSpec, DatasetSpec, PartialSpec

    partial = partial or PartialSpec()
    target = target or partial.target
    label_kind = partial.target_kind or target_kind
    positive_label = positive_label if positive_label is not None else partial.positive_label
    if target is None:
        raise DataError("no target column given; pass --target COLUMN (or 'target:' in the spec)")
    if label_kind == "numeric":
        if positive_label is not None:
            raise DataError(f"'{target}' is a numeric target (a value to predict); it takes no positive label")
        if target not in df.columns:
            raise DataError(f"target column '{target}' is not in the data; columns are {list(df.columns)}")
        NumericCodec(target).encode_training(df[target])  # junk, missing or infinite values: named here
    elif label_kind == "binary":
        check_target(df, target, positive_label)
        assert positive_label is not None
    else:
        raise SpecError(f"infer_spec infers binary or numeric targets, not {label_kind!r}; a multiclass family infers its own")
    skip = {target, *(partial.drop or []), *partial.passthrough}
    id_column = partial.id_column
    if id_column is None:  # a row number or key column is not a feature
        id_column = next((c for c in df.columns if c not in skip and c not in partial.columns and looks_like_id(df[c], str(c))), None)
    if id_column:
        skip.add(id_column)
    unknown_cols = [c for c in partial.columns if c not in df.columns]
    if unknown_cols:
        raise SpecError(f"spec names columns {unknown_cols} that are not in the data; columns are {list(df.columns)}")

    columns: list[ColumnSpec] = []
    for col in df.columns:
        if col in skip:
            continue
        s = df[col]
        override = partial.columns.get(col, {})
        kind = override.get("type")
        if kind is None:
            if is_numeric_series(s) or pd.api.types.is_bool_dtype(s):
                kind = "numeric"
            elif looks_numeric_with_junk(s):
                raise DataError(
                    f"column '{col}' is numeric but has non-numeric values {junk_values(s)}; "
                    f"clean them, or declare '{col}' as categorical in a --spec file"
                )
            else:
                kind = "categorical"
        null_frac = float(s.isna().mean())
        allowed_nulls = min(1.0, round(max(null_frac * 2, null_frac + 0.05), 4)) if null_frac > 0 else 0.0
        if kind == "datetime":
            columns.append(ColumnSpec(name=col, kind="datetime", max_null_fraction=float(override.get("max_null_fraction", allowed_nulls))))
        elif kind == "numeric":
            num = coerce_numeric(s, col)
            lo, hi = (float(num.min()), float(num.max())) if num.notna().any() else (0.0, 0.0)
            wlo, whi = widen(lo, hi)
            columns.append(
                ColumnSpec(
                    name=col,
                    kind="numeric",
                    min=override.get("min", wlo),
                    max=override.get("max", whi),
                    max_null_fraction=float(override.get("max_null_fraction", allowed_nulls)),
                    monotone=override.get("monotone"),
                )
            )
        else:
            observed = sorted({str(v) for v in s.dropna().unique()})
            if len(observed) > MAX_CATEGORIES and "values" not in override:
                raise DataError(
                    f"column '{col}' has {len(observed)} distinct text values (limit {MAX_CATEGORIES}); "
                    f"drop it (drop: [{col}] in a --spec file) or mark it as id_column"
                )
            values = override.get("values", observed)
            columns.append(
                ColumnSpec(
                    name=col,
                    kind="categorical",
                    values=tuple(str(v) for v in values),
                    max_null_fraction=float(override.get("max_null_fraction", allowed_nulls)),
                )
            )
    if not columns:
        raise DataError("the data has no feature columns besides the target; check the file and --target")

    negatives: tuple[str, ...] = ()
    positive_rate: tuple[float, float] | None = None
    if label_kind == "binary":
        negatives = tuple(partial.negative_labels) or observed_negatives(df, target, str(positive_label))
        codec = LabelCodec(target, str(positive_label), negatives)
        negatives = codec.negative_labels
        rate = float(codec.encode_training(df[target]).mean())
        band = partial.positive_rate or (max(0.0, rate * 0.5 - 0.01), min(1.0, rate * 1.5 + 0.01))
        positive_rate = (round(band[0], 4), round(band[1], 4))
    return DatasetSpec(
        name=partial.name or name,
        target=target,
        positive_label=None if positive_label is None else str(positive_label),
        negative_labels=negatives,
        columns=tuple(columns),
        id_column=id_column,
        drop=tuple(partial.drop or []),
        positive_rate=positive_rate,
        min_rows=partial.min_rows if partial.min_rows is not None else min(100, len(df)),
        roles=dict(partial.roles),
        passthrough=tuple(partial.passthrough),
        protected=tuple(partial.protected),
        target_kind=label_kind,
    )


ID_NAMES = {"id", "rownames", "index", "row", "row_id", "unnamed: 0"}


def looks_like_id(s: pd.Series, name: str) -> bool:
    """A key column: named like one and unique on every row."""
    lowered = name.lower()
    named = lowered in ID_NAMES or lowered.endswith("_id")
    return named and s.notna().all() and s.is_unique


def observed_negatives(df: pd.DataFrame, target: str, positive_label: str) -> tuple[str, ...]:
    """The target's values other than the positive label, as strings, sorted."""
    return tuple(sorted({str(v) for v in df[target].dropna().unique()} - {str(positive_label)}))


def with_observed_labels(spec: DatasetSpec, df: pd.DataFrame) -> DatasetSpec:
    """``spec`` with its negative labels recorded from ``df`` when it has none yet (older frozen specs).

    Training logs this spec with the run, so serving and monitoring can rebuild the label codec.
    """
    if spec.target is None or spec.positive_label is None or spec.negative_labels or spec.target not in df.columns:
        return spec
    return replace(spec, negative_labels=observed_negatives(df, spec.target, spec.positive_label))


