"""Request schemas built per model version: the signature names the fields and their
types, the training spec adds ranges, categorical domains and which fields may be null.

* every signature column is required; a column the spec allows nulls for accepts ``null``
* numbers must be JSON numbers (no strings, no booleans), finite, and inside the spec's
  ``[min, max]`` (the range the training data was validated against: anything outside is
  a value the model has never seen, so it is rejected rather than extrapolated)
* categoricals must be one of the spec's values (the model would silently treat an
  unknown category as "none of them"; we reject it with the allowed values instead)
* unknown fields are rejected (a typo must not turn into a silently missing value)

Parsing goes straight from the body bytes through pydantic-core (no ``json.loads``), into
plain dicts, which is what :meth:`features.transform.TabularFeatures.transform_records` reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from features.spec import DatasetSpec
from serving.errors import BatchTooLarge, InvalidRecords, MalformedRequest

NUMERIC_TYPES = {"double", "float", "long", "integer"}
#: Bounds for a numeric column the spec says nothing about: still no absurd magnitudes.
FALLBACK_ABS_MAX = 1e12
MAX_TEXT = 200
MAX_REPORTED_ERRORS = 50


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["numeric", "categorical", "boolean"]
    nullable: bool
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.kind == "numeric":
            text = f"number in [{_fmt(self.min)}, {_fmt(self.max)}]"
        elif self.kind == "boolean":
            text = "true or false"
        elif self.values is not None:
            text = "one of " + ", ".join(self.values)
        else:
            text = f"text up to {MAX_TEXT} characters"
        return text + ("; null when unknown" if self.nullable else "")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-inf"
    return f"{int(v)}" if float(v).is_integer() else f"{v:g}"


def columns_from(signature_inputs: Sequence[Mapping[str, Any]], spec: DatasetSpec | None) -> list[Column]:
    """Merge the signature (names, types: the source of truth) with the spec (limits)."""
    cols: list[Column] = []
    spec_cols = {c.name: c for c in spec.columns} if spec is not None else {}
    for item in signature_inputs:
        name, typ = str(item["name"]), str(item.get("type", "double"))
        sc = spec_cols.get(name)
        nullable = (sc.max_null_fraction > 0) if sc is not None else not bool(item.get("required", True))
        if typ in NUMERIC_TYPES:
            lo = sc.min if sc is not None and sc.min is not None else -FALLBACK_ABS_MAX
            hi = sc.max if sc is not None and sc.max is not None else FALLBACK_ABS_MAX
            cols.append(Column(name, "numeric", nullable, float(lo), float(hi)))
        elif typ == "string":
            values = sc.values if sc is not None and sc.values else None
            cols.append(Column(name, "categorical", nullable, values=values))
        elif typ == "boolean":
            cols.append(Column(name, "boolean", nullable))
        else:
            raise ValueError(f"signature column '{name}' has type '{typ}', which serving cannot validate")
    if not cols:
        raise ValueError("the model signature has no input columns")
    return cols


def _annotation(col: Column) -> Any:
    desc = col.describe()
    ann: Any
    if col.kind == "numeric":
        ann = Annotated[float, Field(strict=True, ge=col.min, le=col.max, allow_inf_nan=False, description=desc)]
    elif col.kind == "boolean":
        ann = Annotated[bool, Field(strict=True, description=desc)]
    elif col.values is not None:
        ann = Annotated[Literal[col.values], Field(description=desc)]  # type: ignore[valid-type]
    else:
        # no NUL: Postgres text and JSONB cannot store it
        ann = Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT, pattern=r"^[^\x00]*$"), Field(description=desc)]
    if col.nullable:
        ann = Annotated[ann | None, Field(description=desc)]
    return ann


def _title(model_name: str) -> str:
    parts = [p for p in "".join(ch if ch.isalnum() else " " for ch in model_name).split() if p]
    return "".join(p[:1].upper() + p[1:] for p in parts) or "Model"


@dataclass
class RecordSchema:
    """Validation of one record or a list of records for one model version."""

    model_name: str
    columns: list[Column]
    max_rows: int
    example: dict[str, Any] | None = None
    _one: TypeAdapter[Any] = field(init=False, repr=False)
    _many: TypeAdapter[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        title = f"{_title(self.model_name)}Record"
        record = TypedDict(title, {c.name: _annotation(c) for c in self.columns})  # type: ignore[misc]
        record.__pydantic_config__ = ConfigDict(extra="forbid", title=title)  # type: ignore[attr-defined]
        self._record_type = record
        self._one = TypeAdapter(record)
        # the length is checked while the array is read: an oversized batch is refused before its records are
        self._many = TypeAdapter(Annotated[list[record], Field(max_length=self.max_rows)])  # type: ignore[valid-type]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def record_json_schema(self) -> dict[str, Any]:
        schema = self._one.json_schema()
        if self.example is not None:
            schema["examples"] = [self.example]
        return schema

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        """Records from a request body: one JSON object, or a non-empty array of them."""
        start = body.lstrip()[:1]
        if start == b"{":
            adapter, many = self._one, False
        elif start == b"[":
            adapter, many = self._many, True
        elif not start:
            raise MalformedRequest("the request body is empty; send one record as a JSON object or a JSON array of records")
        else:
            raise MalformedRequest("the request body must be a JSON object (one record) or a JSON array of records")
        try:
            parsed = adapter.validate_json(body)
        except ValidationError as exc:
            if many and any(e["type"] == "too_long" and not e["loc"] for e in exc.errors()):
                size = next(e.get("ctx", {}).get("actual_length") for e in exc.errors() if e["type"] == "too_long")
                raise BatchTooLarge(
                    f"the batch has {size or 'more than ' + str(self.max_rows)} records; the limit is {self.max_rows}: "
                    "split it into smaller requests"
                ) from None
            raise _invalid(exc, many) from None
        if not many:
            return [parsed]
        if not parsed:
            raise InvalidRecords(
                "the list of records is empty; send at least one record",
                [{"field": "body", "message": "list should have at least 1 item", "type": "too_short"}],
            )
        return parsed

    def validate_python(self, record: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return dict(self._one.validate_python(dict(record)))
        except ValidationError as exc:
            raise _invalid(exc, False) from None


def _field_path(loc: tuple[Any, ...]) -> str:
    path = "body"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _invalid(exc: ValidationError, many: bool) -> MalformedRequest | InvalidRecords:
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        msg = next(e["msg"] for e in errors if e["type"] == "json_invalid")
        return MalformedRequest(f"the request body is not valid JSON ({msg}); send a JSON object or array")
    out: list[dict[str, Any]] = []
    for e in errors[:MAX_REPORTED_ERRORS]:
        item: dict[str, Any] = {"field": _field_path(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
        ctx = e.get("ctx")
        if ctx:
            item["constraint"] = {k: _jsonable(v) for k, v in ctx.items()}
        out.append(item)
    more = len(errors) - len(out)
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in out[:3])
    tail = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    if more > 0:
        out.append({"field": "body", "message": f"{more} more errors not shown", "type": "truncated"})
    return InvalidRecords(f"the records do not match the model's input schema: {summary}{tail}", out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)
