"""Request schemas built per model version: the signature names the fields and their
types, the training spec adds ranges, categorical domains and which fields may be null.

* every signature column is required; a column the spec allows nulls for accepts ``null``
* numbers must be JSON numbers (no strings, no booleans), finite, and inside the spec's
  ``[min, max]`` (the range the training data was validated against: anything outside is
  a value the model has never seen, so it is rejected rather than extrapolated)
* categoricals must be one of the spec's values (the model would silently treat an
  unknown category as "none of them"; we reject it with the allowed values instead)
* unknown fields are rejected (a typo must not turn into a silently missing value)

The same rules, applied column by column to a file's rows (:func:`validate_frame`), validate
offline scoring and batch jobs: one set of rules for every way records come in.

Parsing goes straight from the body bytes through pydantic-core (no ``json.loads``), into
plain dicts, which is what :meth:`features.transform.TabularFeatures.transform_records` reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import from_json
from typing_extensions import TypedDict

from features.spec import DatasetSpec
from serving.errors import BatchTooLarge, InvalidRecords, MalformedRequest

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = {"double", "float", "long", "integer"}
#: Bounds for a numeric column the spec says nothing about: still no absurd magnitudes.
FALLBACK_ABS_MAX = 1e12
MAX_TEXT = 200
#: Postgres text and JSONB cannot store it
NUL = "\x00"
MAX_REPORTED_ERRORS = 50
#: JSON tokens the pre-scan counts: a whole string (with ``:`` after it when it is a key) or a bracket or comma.
#: Outside strings JSON has no quote characters, so matching strings left to right never loses step.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?|[{}\[\],]')


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["numeric", "categorical", "boolean"]
    nullable: bool
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        """The inclusive range of a numeric column (unbounded sides as infinities)."""
        return (self.min if self.min is not None else -math.inf, self.max if self.max is not None else math.inf)

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
        ann = Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT, pattern=r"^[^\x00]*$"), Field(description=desc)]  # no NUL
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
        # fail_fast: pydantic stops at the first invalid record instead of building errors for the whole batch
        self._many = TypeAdapter(Annotated[list[record], Field(max_length=self.max_rows, fail_fast=True)])  # type: ignore[valid-type]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def record_json_schema(self) -> dict[str, Any]:
        schema = self._one.json_schema()
        if self.example is not None:
            schema["examples"] = [self.example]
        return schema

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        """Records from a request body: one JSON object, or a non-empty array of them.

        The work is bounded by what a valid batch may hold, not by what is wrong in the body: a
        body with more keys, values or records than ``max_rows`` full records could carry is
        refused by a scan that stops at the first surplus (before any Python object is built),
        unknown and missing fields are reported from the parsed records before pydantic sees them,
        and pydantic stops at the first invalid record; at most ``MAX_REPORTED_ERRORS`` errors are
        ever built.
        """
        start = body.lstrip()[:1]
        if start == b"{":
            many = False
        elif start == b"[":
            many = True
        elif not start:
            raise MalformedRequest("the request body is empty; send one record as a JSON object or a JSON array of records")
        else:
            raise MalformedRequest("the request body must be a JSON object (one record) or a JSON array of records")
        self._prescan(body, many)
        try:
            parsed = from_json(body, cache_strings="keys")
        except ValueError as exc:
            raise MalformedRequest(f"the request body is not valid JSON ({exc}); send a JSON object or array") from None
        if not many:
            self._check_keys([parsed], many=False)
            try:
                return [self._one.validate_python(parsed)]
            except ValidationError as exc:
                raise _invalid(exc, False) from None
        if not isinstance(parsed, list):  # pragma: no cover - the first byte was "["
            raise MalformedRequest("the request body must be a JSON object (one record) or a JSON array of records")
        if len(parsed) > self.max_rows:
            raise self._too_many(str(len(parsed)))
        if not parsed:
            raise InvalidRecords(
                "the list of records is empty; send at least one record",
                [{"field": "body", "message": "list should have at least 1 item", "type": "too_short"}],
            )
        self._check_keys(parsed, many=True)
        try:
            return self._many.validate_python(parsed)  # type: ignore[no-any-return]
        except ValidationError as exc:  # fail-fast: the first invalid record; collect a few more errors
            first = exc.errors(include_url=False, include_input=False)[0]["loc"]
            index = first[0] if first and isinstance(first[0], int) else 0
        raise self._collect_errors(parsed, index)

    def _too_many(self, count: str) -> BatchTooLarge:
        return BatchTooLarge(f"the batch has {count} records; the limit is {self.max_rows}: split it into smaller requests")

    def _prescan(self, body: bytes, many: bool) -> None:
        """Refuse, before parsing, a body with more records, keys or values than a full valid batch.

        Counting bytes is an upper bound on the tokens (a ``:`` or ``,`` may sit inside a string),
        so the exact scan runs only when that bound is exceeded, and stops at the first surplus.
        """
        ncols = len(self.columns)
        rows = self.max_rows if many else 1
        max_keys = ncols * rows
        max_values = (ncols + 2) * rows + 2  # brackets and commas of a full valid batch, with room
        # every key has a colon and every value but a container's last a comma after it (deep nesting
        # without commas is refused by the parser's depth limit)
        if body.count(b":") <= max_keys and body.count(b",") <= max_values - 2 * rows:
            return
        names = {c.name.encode() for c in self.columns}
        depth = 0
        record = -1
        keys = values = 0
        errors: list[dict[str, Any]] = []
        for m in _TOKEN.finditer(body):
            tok = m.group()
            if tok[:1] == b'"':
                if m.group(1) is None:
                    continue
                keys += 1
                key = tok[1 : tok.rindex(b'"')]
                if depth == (2 if many else 1) and key not in names and len(errors) < MAX_REPORTED_ERRORS:
                    field = f"body[{record}]" if many else "body"
                    shown = key[:MAX_TEXT].decode("utf-8", "replace")
                    errors.append({"field": f"{field}.{shown}", "message": "Extra inputs are not permitted", "type": "extra_forbidden"})
                if len(errors) >= MAX_REPORTED_ERRORS or keys > max_keys:
                    break
                continue
            values += 1
            if tok in (b"{", b"["):
                depth += 1
                if many and depth == 2:
                    record += 1
                    if record >= self.max_rows:
                        raise self._too_many(f"more than {self.max_rows}")
            elif tok in (b"}", b"]"):
                values -= 1
                depth -= 1
            if values > max_values:
                break
        else:
            return  # the bound was loose (colons and commas in strings): nothing to refuse
        if errors:
            errors.append({"field": "body", "message": "further fields were not checked", "type": "truncated"})
            raise InvalidRecords(
                f"the records carry fields the model does not know ({errors[0]['field']}, ...); "
                f"send only the model's fields: {', '.join(self.names)}",
                errors,
            )
        raise InvalidRecords(
            f"the body holds more fields or values than {rows} record(s) of {ncols} fields can; "
            f"send only the model's fields ({', '.join(self.names)}) with one plain value each",
            [{"field": "body", "message": f"more than {max_keys} fields or {max_values} values", "type": "too_long"}],
        )

    def _check_keys(self, records: list[Any], *, many: bool) -> None:
        """Unknown and missing fields, reported before pydantic builds an error per field."""
        names = self.names
        known = set(names)
        errors: list[dict[str, Any]] = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or rec.keys() == known:
                continue
            prefix = f"body[{i}]" if many else "body"
            for key in rec:
                if key not in known:
                    errors.append({"field": f"{prefix}.{str(key)[:MAX_TEXT]}", "message": "Extra inputs are not permitted", "type": "extra_forbidden"})
                    if len(errors) >= MAX_REPORTED_ERRORS:
                        break
            for name in names:
                if name not in rec and len(errors) < MAX_REPORTED_ERRORS:
                    errors.append({"field": f"{prefix}.{name}", "message": "Field required", "type": "missing"})
            present = {k: v for k, v in rec.items() if k in known}
            if present and len(errors) < MAX_REPORTED_ERRORS:  # the known fields' values too: one record's work
                try:
                    self._one.validate_python(present)
                except ValidationError as exc:
                    for e in exc.errors(include_url=False, include_input=False):
                        if e["type"] != "missing" and len(errors) < MAX_REPORTED_ERRORS:
                            errors.append(_error_item(((i,) if many else ()) + tuple(e["loc"]), e))
            if len(errors) >= MAX_REPORTED_ERRORS:
                if i + 1 < len(records):
                    errors.append({"field": "body", "message": "records after this one were not checked", "type": "truncated"})
                break
        if errors:
            raise InvalidRecords(_summary(errors), errors)

    def _collect_errors(self, records: list[Any], start: int) -> InvalidRecords:
        """Errors of the records from ``start`` on, one record at a time, until there are enough."""
        out: list[dict[str, Any]] = []
        for i in range(start, len(records)):
            try:
                self._one.validate_python(records[i])
            except ValidationError as exc:
                for e in exc.errors(include_url=False, include_input=False):
                    out.append(_error_item((i, *e["loc"]), e))
            if len(out) >= MAX_REPORTED_ERRORS:
                del out[MAX_REPORTED_ERRORS:]
                if i + 1 < len(records):
                    out.append({"field": "body", "message": "records after this one were not checked", "type": "truncated"})
                break
        return InvalidRecords(_summary(out), out)

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


def _error_item(loc: tuple[Any, ...], e: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"field": _field_path(loc), "message": e["msg"], "type": e["type"]}
    ctx = e.get("ctx")
    if ctx:
        item["constraint"] = {k: _jsonable(v) for k, v in ctx.items()}
    return item


def _summary(errors: list[dict[str, Any]]) -> str:
    shown = [e for e in errors if e["type"] != "truncated"]
    text = "; ".join(f"{i['field']}: {i['message']}" for i in shown[:3])
    tail = f" (+{len(shown) - 3} more)" if len(shown) > 3 else ""
    return f"the records do not match the model's input schema: {text}{tail}"


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


# --- the same rules, column by column, for files (``ledgerline score``, batch jobs) ---------------

#: How a file's text cell reads as a boolean (a JSON request carries true/false).
_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


def validate_frame(frame: pd.DataFrame, columns: Sequence[Column], spec: DatasetSpec | None) -> tuple[pd.DataFrame, pd.Series]:
    """The request columns of ``frame`` converted to their types, and a reason per rejected row.

    Returns ``(clean, reasons)``: ``clean`` holds the valid rows only (same index labels);
    ``reasons`` is indexed by the rejected rows' labels. The rules are the API's: numbers finite
    and inside the spec's range, categoricals one of the spec's values, text at most
    ``MAX_TEXT`` characters, nulls only where the spec allows them, timestamps parseable.
    """
    import numpy as np
    import pandas as pd

    from serving.schema import MAX_TEXT

    kinds = {c.name: c.kind for c in spec.columns} if spec is not None else {}
    out: dict[str, Any] = {}
    problems: list[pd.Series] = []

    def flag(mask: Any, name: str, why: str) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=frame.index)
        if mask.any():
            problems.append(pd.Series(f"{name}: {why}", index=frame.index[mask.to_numpy()]))

    for col in columns:
        if col.name not in frame.columns:  # a nullable column the file lacks
            out[col.name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
            continue
        raw = frame[col.name]
        null = raw.isna().to_numpy()
        if not col.nullable:
            flag(null, col.name, "is empty; the model needs a value")
        if col.kind == "numeric":
            num = pd.to_numeric(raw, errors="coerce").astype(float)
            bad = num.isna().to_numpy() & ~null
            flag(bad, col.name, "is not a number")
            v = num.to_numpy()
            with np.errstate(invalid="ignore"):
                inf = ~np.isfinite(v) & ~np.isnan(v)
                lo, hi = col.bounds
                out_of_range = ~np.isnan(v) & ~inf & ((v < lo) | (v > hi))
            flag(inf, col.name, "is not finite")
            flag(out_of_range, col.name, f"is outside the model's range [{lo:g}, {hi:g}]")
            out[col.name] = num.astype(object).where(~num.isna(), None)
        elif col.kind == "boolean":
            if pd.api.types.is_bool_dtype(raw):
                out[col.name] = raw.astype(object).where(~raw.isna(), None)
            else:
                text = raw.astype(str).str.strip().str.lower()
                is_t, is_f = text.isin(_TRUE).to_numpy(), text.isin(_FALSE).to_numpy()
                flag(~null & ~is_t & ~is_f, col.name, "is not true or false")
                values = [True if t else False if f else None for t, f in zip(is_t.tolist(), is_f.tolist(), strict=True)]
                out[col.name] = pd.Series(values, index=frame.index, dtype=object)
        else:
            text = raw.astype(object).where(~raw.isna(), None).map(lambda v: v if v is None or isinstance(v, str) else str(v))
            if kinds.get(col.name) == "datetime":
                ts = pd.to_datetime(raw.where(~raw.isna(), None), errors="coerce", utc=True, format="ISO8601")
                flag(ts.isna().to_numpy() & ~null, col.name, "is not a timestamp (use ISO 8601, e.g. 2026-03-01T14:05:00Z)")
            elif col.values is not None:
                allowed = set(col.values)
                flag(~null & ~text.isin(allowed).to_numpy(), col.name, "is not one of " + ", ".join(col.values[:20])
                     + (", ..." if len(col.values) > 20 else ""))
            else:
                lengths = text.map(lambda v: len(v) if v is not None else 0).to_numpy()
                flag(lengths > MAX_TEXT, col.name, f"is longer than {MAX_TEXT} characters")
                flag(text.map(lambda v: v is not None and NUL in v).to_numpy(), col.name, "holds a NUL character")
            out[col.name] = text
    clean = pd.DataFrame(out, index=frame.index)
    if problems:
        reasons = pd.concat(problems).groupby(level=0, sort=True).agg("; ".join)
    else:
        reasons = pd.Series([], dtype=object)
    return clean.drop(index=reasons.index), reasons


def missing_columns(names: Sequence[str], columns: Sequence[Column]) -> list[str]:
    have = set(names)
    return [c.name for c in columns if c.name not in have and not c.nullable]
