"""Dataset specs: which columns a dataset has, their types, domains and limits.

A spec is the single description that drives type coercion, the Great Expectations
suite and the feature transformer. The model lives here; inference is :mod:`features.inference`
and coercion :mod:`features.conform`, both re-exported below (``from features.spec import conform``). It can be written by hand as YAML, inferred from
a first accepted snapshot, or a mix (YAML overrides what inference would pick).

YAML format (every key but ``target`` and ``positive_label`` is optional)::

    name: my-loans
    target: Status
    target_kind: binary          # binary | multiclass | numeric (default: multiclass with classes, else binary)
    positive_label: bad          # binary targets only
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

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, field_validator

from features.labels import LABEL_COLUMN, LABEL_KINDS, CategoryCodec, LabelCodec, LabelKind, NumericCodec, OutcomeCodec
from ledgerline.errors import SpecError

ColumnKind = Literal["numeric", "categorical", "datetime"]
Monotone = Literal["increasing", "decreasing"]
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
    into features); ``target``/``positive_label`` are None for unlabelled data; ``target_kind`` says
    what the target holds (binary: an event with a positive label; multiclass: one of ``classes``;
    numeric: a number), derived for specs that do not record it and None without a target; ``roles`` name
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
    target_kind: LabelKind | None = None

    def __post_init__(self) -> None:
        kind = self.target_kind
        if self.target is None:
            if kind is not None:
                raise SpecError(f"spec '{self.name}': target_kind {kind!r} needs a target column")
        else:
            if kind is None:  # specs written before the kind was recorded
                kind = "multiclass" if self.classes else "binary"
                object.__setattr__(self, "target_kind", kind)
            if kind not in LABEL_KINDS:
                raise SpecError(f"spec '{self.name}': target_kind must be one of {list(LABEL_KINDS)}, not {kind!r}")
            if kind == "binary" and self.positive_label is None:
                raise SpecError(f"spec '{self.name}': a target needs a positive_label (the value that marks the event)")
            if kind == "multiclass" and not self.classes:
                raise SpecError(f"spec '{self.name}': a multiclass target needs its classes")
            if kind == "numeric" and (self.positive_label is not None or self.classes):
                raise SpecError(
                    f"spec '{self.name}': a numeric target takes no positive_label or classes; remove them, "
                    "or set target_kind to binary or multiclass"
                )
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
        if self.target_kind == "multiclass":
            return CategoryCodec(self.target, self.classes)
        if self.target_kind == "numeric":
            return NumericCodec(self.target)
        assert self.positive_label is not None  # __post_init__: a binary target has one
        return LabelCodec(self.target, self.positive_label, self.negative_labels)

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
            "target_kind": self.target_kind,
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
        if (partial.target is not None and partial.positive_label is None and not partial.classes
                and partial.target_kind != "numeric"):
            raise SpecError(f"{source}: a 'target' needs a 'positive_label' (or, for categories, 'classes'; "
                            "for a number, 'target_kind: numeric')")
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
            target_kind=partial.target_kind,
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
    target_kind: Literal["binary", "multiclass", "numeric"] | None = None
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
    "name": "a text", "target": "a column name", "target_kind": "'binary', 'multiclass' or 'numeric'",
    "positive_label": "one value of the target",
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
    target_kind: LabelKind | None = None
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
            target_kind=top.target_kind,
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


def with_name(spec: DatasetSpec, name: str) -> DatasetSpec:
    return replace(spec, name=name)


def label_codec_of(spec: DatasetSpec | None) -> LabelCodec:
    """The binary codec of the spec's target, or the canonical 0/1 alone when there is no spec or no target."""
    if spec is None or spec.target is None:
        return LabelCodec.canonical_only()
    codec = spec.label_codec
    if not isinstance(codec, LabelCodec):
        raise SpecError(f"spec '{spec.name}' has a {spec.target_kind} target; use outcome_codec_of")
    return codec


def outcome_codec_of(spec: DatasetSpec | None) -> OutcomeCodec:
    """The codec of the spec's target whatever its kind (binary, categories, numbers); canonical 0/1 without one."""
    return spec.label_codec if spec is not None and spec.target is not None else LabelCodec.canonical_only()


# --- inference and coercion live in their own modules; imported here so ``features.spec`` stays the one import
from features.conform import (  # noqa: E402
    NUMERIC_JUNK_THRESHOLD,
    check_target,
    coerce_datetime,
    coerce_numeric,
    conform,
    is_numeric_series,
    junk_values,
    looks_numeric_with_junk,
)
from features.inference import (  # noqa: E402
    ID_NAMES,
    MAX_CATEGORIES,
    infer_spec,
    looks_like_id,
    observed_negatives,
    widen,
    with_observed_labels,
)

_looks_like_id = looks_like_id  # the names a family's inference imported before the split
_widen = widen

__all__ = [
    "ID_NAMES",
    "LABEL_COLUMN",
    "MAX_CATEGORIES",
    "NUMERIC_JUNK_THRESHOLD",
    "ColumnKind",
    "ColumnSpec",
    "DatasetSpec",
    "LabelCodec",
    "LabelKind",
    "PartialSpec",
    "check_target",
    "coerce_datetime",
    "coerce_numeric",
    "conform",
    "infer_spec",
    "is_numeric_series",
    "junk_values",
    "label_codec_of",
    "load_partial_spec",
    "looks_like_id",
    "looks_numeric_with_junk",
    "observed_negatives",
    "outcome_codec_of",
    "widen",
    "with_name",
    "with_observed_labels",
]
