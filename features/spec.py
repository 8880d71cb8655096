"""Dataset specs: which columns a dataset has, their types, domains and limits.

A spec is the single description that drives type coercion, the Great Expectations
suite and the feature transformer. It can be written by hand as YAML, inferred from
a first accepted snapshot, or a mix (YAML overrides what inference would pick).

YAML format (every key but ``target`` and ``positive_label`` is optional)::

    name: my-loans
    target: Status
    positive_label: bad
    negative_labels: [good]      # the other class(es); recorded at training, feedback accepts them
    id_column: loan_id           # kept out of the features
    drop: [branch_code]          # ignored columns
    positive_rate: [0.05, 0.40]  # allowed band for the share of positive labels
    min_rows: 200
    columns:
      Income: {type: numeric, min: 0, max: 1000, max_null_fraction: 0.05, monotone: decreasing}
      Home:   {type: categorical, values: [rent, owner, parents, other]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, field_validator

from features.labels import CategoryCodec, LabelCodec, OutcomeCodec
from ledgerline.errors import DataError, SpecError

ColumnKind = Literal["numeric", "categorical", "datetime"]
Monotone = Literal["increasing", "decreasing"]

# A column whose non-null values parse as numbers at least this often is numeric
# data with junk in it, not a categorical column.
NUMERIC_JUNK_THRESHOLD = 0.9
MAX_CATEGORIES = 50
LABEL_COLUMN = "__label__"
_M = TypeVar("_M", bound="BaseModel")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: ColumnKind
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None
    max_null_fraction: float = 0.0
    monotone: Monotone | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical", "datetime"):
            raise SpecError(
                f"column '{self.name}': type must be 'numeric', 'categorical' or 'datetime', not {self.kind!r}"
            )
        if self.monotone not in (None, "increasing", "decreasing"):
            raise SpecError(f"column '{self.name}': monotone must be 'increasing' or 'decreasing'")
        if not 0.0 <= self.max_null_fraction <= 1.0:
            raise SpecError(f"column '{self.name}': max_null_fraction must be between 0 and 1")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SpecError(f"column '{self.name}': min {self.min} is above max {self.max}")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's contract. ``columns`` are the inputs a caller sends (and the model family turns
    into features); ``target``/``positive_label`` are None for unlabelled data; ``roles`` name
    columns a family gives a meaning to (e.g. ``customer``, ``timestamp``, ``amount``);
    ``passthrough`` columns are kept in snapshots for evaluation but are never model inputs;
    ``protected`` names protected or proxy attributes (e.g. an age band, sex): the model card
    reports outcomes per group of each (and a family's gate may require parity)."""

    name: str
    target: str | None
    positive_label: str | None
    columns: tuple[ColumnSpec, ...]
    id_column: str | None = None
    drop: tuple[str, ...] = ()
    positive_rate: tuple[float, float] | None = None
    min_rows: int = 100
    extra: Mapping[str, Any] = field(default_factory=dict)
    negative_labels: tuple[str, ...] = ()  # empty in specs frozen before they were recorded
    roles: Mapping[str, str] = field(default_factory=dict)
    passthrough: tuple[str, ...] = ()
    #: a multiclass target's classes (e.g. categories); then there is no positive label
    classes: tuple[str, ...] = ()
    #: time-series data: {freq, horizon, min_length, allow_negative} (the forecasting family reads it)
    series: Mapping[str, Any] | None = None
    protected: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.target is not None and self.positive_label is None and not self.classes:
            raise SpecError(f"spec '{self.name}': a target needs a positive_label (the value that marks the event)")
        names = {*self.feature_names, *self.passthrough, self.id_column}
        for role, column in self.roles.items():
            if column not in names:
                raise SpecError(f"spec '{self.name}': role '{role}' names column '{column}', which is not in columns")
        for column in self.protected:
            if column not in names:
                raise SpecError(
                    f"spec '{self.name}': protected names column '{column}', which is not in columns or passthrough"
                )

    @property
    def label_codec(self) -> OutcomeCodec:
        """The one definition of what the target's values mean (training, feedback, monitoring)."""
        if self.target is None:
            raise SpecError(f"spec '{self.name}' has no target, so it has no label codec")
        if self.classes:
            return CategoryCodec(self.target, self.classes)
        return LabelCodec.from_spec(self)  # type: ignore[arg-type]

    @property
    def datetime(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "datetime"]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    # --- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        for c in self.columns:
            d = {k: v for k, v in asdict(c).items() if k != "name" and v is not None}
            d["type"] = d.pop("kind")
            if "values" in d:
                d["values"] = list(d["values"])
            cols[c.name] = d
        out: dict[str, Any] = {
            "name": self.name,
            "target": self.target,
            "positive_label": self.positive_label,
            "negative_labels": list(self.negative_labels) if self.negative_labels else None,
            "id_column": self.id_column,
            "drop": list(self.drop),
            "positive_rate": list(self.positive_rate) if self.positive_rate else None,
            "min_rows": self.min_rows,
            "roles": dict(self.roles) if self.roles else None,
            "passthrough": list(self.passthrough) if self.passthrough else None,
            "classes": list(self.classes) if self.classes else None,
            "series": dict(self.series) if self.series else None,
            "protected": list(self.protected) if self.protected else None,
            "columns": cols,
        }
        return {k: v for k, v in out.items() if v is not None}

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "spec") -> DatasetSpec:
        partial = PartialSpec.from_dict(raw, source=source)
        missing = [c for c, _ in partial.columns.items() if "type" not in _]
        if partial.target is not None and partial.positive_label is None and not partial.classes:
            raise SpecError(f"{source}: a 'target' needs a 'positive_label' (or, for categories, 'classes')")
        if missing:
            raise SpecError(f"{source}: columns {missing} have no 'type' (numeric, categorical or datetime)")
        return DatasetSpec(
            name=partial.name or "dataset",
            target=partial.target,
            positive_label=partial.positive_label,
            negative_labels=tuple(partial.negative_labels),
            columns=tuple(_column_from_dict(n, d, source) for n, d in partial.columns.items()),
            id_column=partial.id_column,
            drop=tuple(partial.drop),
            positive_rate=partial.positive_rate,
            min_rows=partial.min_rows if partial.min_rows is not None else 100,
            roles=dict(partial.roles),
            passthrough=tuple(partial.passthrough),
            classes=tuple(partial.classes),
            series=dict(partial.series) if partial.series else None,
            protected=tuple(partial.protected),
        )


def _column_from_dict(name: str, d: Mapping[str, Any], source: str) -> ColumnSpec:
    col = _parse(_ColumnModel, d, source, prefix=f"columns.{name}")
    if col.type is None:
        raise SpecError(f"{source}: column '{name}' has no 'type' (numeric, categorical or datetime)")
    return ColumnSpec(
        name=name,
        kind=col.type,
        min=col.min,
        max=col.max,
        values=None if col.values is None else tuple(_text(v) for v in col.values),
        max_null_fraction=0.0 if col.max_null_fraction is None else col.max_null_fraction,
        monotone=col.monotone,
    )


# --- the YAML's shape, as typed models: wrong types are named with the key and the expected type

Scalar = str | int | float | bool


def _text(value: Scalar) -> str:
    return str(value)


class _ColumnModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["numeric", "categorical", "datetime"] | None = None
    min: StrictFloat | StrictInt | None = None
    max: StrictFloat | StrictInt | None = None
    values: list[Scalar] | None = Field(None, min_length=1)
    max_null_fraction: StrictFloat | StrictInt | None = Field(None, ge=0, le=1)
    monotone: Literal["increasing", "decreasing"] | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        # YAML 1.1 reads 1e3 as text: accept numeric text, refuse words
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return v


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    target: StrictStr | StrictInt | None = None
    positive_label: Scalar | None = None
    negative_labels: list[Scalar] = Field(default_factory=list)
    id_column: StrictStr | StrictInt | None = None
    drop: list[StrictStr | StrictInt] = Field(default_factory=list)
    positive_rate: tuple[StrictFloat | StrictInt, StrictFloat | StrictInt] | None = None
    min_rows: StrictInt | None = Field(None, ge=1, le=1_000_000_000)
    columns: dict[StrictStr | StrictInt, dict[str, Any]] | None = None
    roles: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    passthrough: list[StrictStr] = Field(default_factory=list)
    classes: list[Scalar] = Field(default_factory=list)
    series: dict[StrictStr, Any] | None = None
    protected: list[StrictStr] = Field(default_factory=list)

    @field_validator("negative_labels", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, int, float, bool)) else v

    @field_validator("positive_rate")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 <= v[0] <= v[1] <= 1:
            raise ValueError("must be [low, high] with 0 <= low <= high <= 1")
        return v


_EXPECTED = {
    "name": "a text", "target": "a column name", "positive_label": "one value of the target",
    "negative_labels": "a list of the target's other values",
    "id_column": "a column name", "drop": "a list of column names", "positive_rate": "[low, high] with 0 <= low <= high <= 1",
    "min_rows": "a whole number of rows >= 1", "columns": "a mapping of column name to {type: ..., ...}",
    "roles": "a mapping of role to column name", "passthrough": "a list of column names",
    "classes": "a list of the target's classes (categories)",
    "series": "a mapping {freq: MS|W|D, horizon: N, min_length: N, allow_negative: true|false}",
    "protected": "a list of column names (protected or proxy attributes)",
    "type": "'numeric', 'categorical' or 'datetime'", "min": "a number", "max": "a number",
    "values": "a non-empty list of category values", "max_null_fraction": "a number between 0 and 1",
    "monotone": "'increasing' or 'decreasing'",
}


def _parse(model: type[_M], raw: Any, source: str, *, prefix: str = "") -> _M:
    if not isinstance(raw, Mapping):
        where = f"'{prefix}'" if prefix else "the top level"
        raise SpecError(f"{source}: expected a mapping at {where}, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            path = f"{prefix}.{key}" if prefix else key
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{path}'; allowed: {sorted(model.model_fields)}")
                continue
            detail = _EXPECTED.get(key, err["msg"])
            if err["type"] in ("greater_than_equal", "less_than_equal", "too_short"):
                detail = f"{detail} ({err['msg'].removeprefix('Value error, ')})"
            problems.append(f"'{path}' must be {detail}, got {err.get('input')!r}")
        raise SpecError(f"{source}: " + "; ".join(dict.fromkeys(problems))) from None


@dataclass
class PartialSpec:
    """What a user's YAML says; inference fills in the rest."""

    name: str | None = None
    target: str | None = None
    positive_label: str | None = None
    negative_labels: list[str] = field(default_factory=list)
    id_column: str | None = None
    drop: list[str] = field(default_factory=list)
    positive_rate: tuple[float, float] | None = None
    min_rows: int | None = None
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    passthrough: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    series: dict[str, Any] | None = None
    protected: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "spec") -> PartialSpec:
        top = _parse(_SpecModel, raw, source)
        columns: dict[str, dict[str, Any]] = {}
        for name, col in (top.columns or {}).items():
            parsed = _parse(_ColumnModel, col, source, prefix=f"columns.{name}")
            columns[str(name)] = parsed.model_dump(exclude_none=True)
        band = top.positive_rate
        return cls(
            name=top.name,
            target=None if top.target is None else str(top.target),
            positive_label=None if top.positive_label is None else _text(top.positive_label),
            id_column=None if top.id_column is None else str(top.id_column),
            negative_labels=[_text(v) for v in top.negative_labels],
            drop=[str(c) for c in top.drop],
            positive_rate=None if band is None else (float(band[0]), float(band[1])),
            min_rows=top.min_rows,
            columns=columns,
            roles=dict(top.roles),
            passthrough=list(top.passthrough),
            classes=[_text(v) for v in top.classes],
            series=dict(top.series) if top.series else None,
            protected=list(top.protected),
        )


def load_partial_spec(path: Path) -> PartialSpec:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"spec file {path} does not exist; check the --spec path") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"spec file {path} is not valid YAML: {exc}") from exc
    return PartialSpec.from_dict(raw or {}, source=str(path))


# --- inference ---------------------------------------------------------------


def _is_numeric_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


is_numeric_series = _is_numeric_dtype


def junk_values(series: pd.Series, limit: int = 3) -> list[str]:
    """Non-null values of ``series`` that do not parse as numbers."""
    non_null = series.dropna()
    parsed = pd.to_numeric(non_null, errors="coerce")
    bad = non_null[parsed.isna()]
    return [str(v) for v in pd.unique(bad)[:limit]]


def looks_numeric_with_junk(series: pd.Series) -> bool:
    non_null = series.dropna()
    if non_null.empty or _is_numeric_dtype(series):
        return False
    parsed = pd.to_numeric(non_null, errors="coerce")
    share = float(parsed.notna().mean())
    return NUMERIC_JUNK_THRESHOLD <= share < 1.0


def _widen(lo: float, hi: float) -> tuple[float, float]:
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
) -> DatasetSpec:
    """Infer a full spec from a first snapshot; anything in ``partial`` wins over inference."""
    partial = partial or PartialSpec()
    target = target or partial.target
    positive_label = positive_label if positive_label is not None else partial.positive_label
    if target is None:
        raise DataError("no target column given; pass --target COLUMN (or 'target:' in the spec)")
    check_target(df, target, positive_label)
    assert positive_label is not None
    skip = {target, *(partial.drop or [])}
    id_column = partial.id_column
    if id_column is None:  # a row number or key column is not a feature
        id_column = next((c for c in df.columns if c not in skip and c not in partial.columns and _looks_like_id(df[c], str(c))), None)
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
            if _is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
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
        if kind == "numeric":
            num = coerce_numeric(s, col)
            lo, hi = (float(num.min()), float(num.max())) if num.notna().any() else (0.0, 0.0)
            wlo, whi = _widen(lo, hi)
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

    negatives = tuple(partial.negative_labels) or observed_negatives(df, target, str(positive_label))
    codec = LabelCodec(target, str(positive_label), negatives)
    rate = float(codec.encode_training(df[target]).mean())
    band = partial.positive_rate or (max(0.0, rate * 0.5 - 0.01), min(1.0, rate * 1.5 + 0.01))
    return DatasetSpec(
        name=partial.name or name,
        target=target,
        positive_label=str(positive_label),
        negative_labels=codec.negative_labels,
        columns=tuple(columns),
        id_column=id_column,
        drop=tuple(partial.drop or []),
        positive_rate=(round(band[0], 4), round(band[1], 4)),
        min_rows=partial.min_rows if partial.min_rows is not None else min(100, len(df)),
        protected=tuple(partial.protected),
    )


ID_NAMES = {"id", "rownames", "index", "row", "row_id", "unnamed: 0"}


def _looks_like_id(s: pd.Series, name: str) -> bool:
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
    if _is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
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
    """The data in the spec's shape: feature columns coerced, label mapped to 0/1 in LABEL_COLUMN
    by the spec's label codec (1 = the positive label).

    Raises DataError for missing columns or junk, before anything is validated or trained.
    """
    if spec.target is not None:
        check_target(df, spec.target, spec.positive_label)
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
        out[spec.target] = df[spec.target].astype(str)
        out[LABEL_COLUMN] = spec.label_codec.encode_training(df[spec.target])
    return out.reset_index(drop=True)


def coerce_datetime(series: pd.Series, name: str) -> pd.Series:
    """Timestamps as UTC datetimes (naive ones are taken as UTC); junk raises a DataError with examples."""
    if _is_numeric_dtype(series):
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


def with_name(spec: DatasetSpec, name: str) -> DatasetSpec:
    return replace(spec, name=name)


def label_codec_of(spec: DatasetSpec | None) -> LabelCodec:
    """The binary codec of the spec's target, or the canonical 0/1 alone when there is no spec or no target."""
    if spec is None or spec.target is None:
        return LabelCodec.canonical_only()
    if spec.classes:
        raise SpecError(f"spec '{spec.name}' has a multiclass target; use outcome_codec_of")
    return LabelCodec.from_spec(spec)  # type: ignore[arg-type]


def outcome_codec_of(spec: DatasetSpec | None) -> OutcomeCodec:
    """The codec of the spec's target whatever its kind (binary or categories); canonical 0/1 without one."""
    return spec.label_codec if spec is not None and spec.target is not None else LabelCodec.canonical_only()
