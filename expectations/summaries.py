"""One human line per failed GX expectation, from the JSON form of its validation result."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .suite import FailedExpectation

MAX_SET_SHOWN = 8


def fmt_number(value: Any) -> str:
    """1000.0 -> '1000', 0.35 -> '0.35', huge or tiny floats in their shortest exact form."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        value = float(value)
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)


def fmt_value(value: Any) -> str:
    """An offending value as it appears in a summary: strings quoted, numbers as Python prints them."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _example_text(value: Any) -> str:
    """An offending value as stored in FailedExpectation.unexpected_examples."""
    return "null" if value is None else str(value)


def _distinct(values: Iterable[Any], limit: int) -> list[Any]:
    seen: set[str] = set()
    out: list[Any] = []
    for v in values:
        key = f"{type(v).__name__}:{v!r}"
        if key in seen:
            continue
        seen.add(key)
        out.append(v)
        if len(out) >= limit:
            break
    return out


def _examples(result: Mapping[str, Any], limit: int) -> list[Any]:
    partial = result.get("partial_unexpected_list")
    if partial:
        return _distinct(partial, limit)
    counts = result.get("partial_unexpected_counts") or []
    return _distinct((c.get("value") for c in counts if isinstance(c, Mapping)), limit)


def _range(lo: Any, hi: Any) -> str:
    if lo is None:
        return f"<= {fmt_number(hi)}"
    if hi is None:
        return f">= {fmt_number(lo)}"
    return f"[{fmt_number(lo)}, {fmt_number(hi)}]"


def _value_set(values: list[Any]) -> str:
    shown = ", ".join(fmt_value(v) for v in values[:MAX_SET_SHOWN])
    more = f", ... ({len(values)} values)" if len(values) > MAX_SET_SHOWN else ""
    return f"[{shown}{more}]"


def _type_names(type_list: Any) -> str:
    names = [str(t) for t in type_list or []]
    if names and all(n.lower().startswith(("float", "int", "uint")) for n in names):
        return "numeric (float/int)" if any(n.lower().startswith("float") for n in names) else "integer"
    return "one of " + ", ".join(names)


def _pct(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") + "%"


def _exception_message(res: Mapping[str, Any]) -> str | None:
    info = res.get("exception_info") or {}
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "an exception was raised")
    # Per-metric form: {metric_id: {"raised_exception": ..., "exception_message": ...}}
    for sub in info.values():
        if isinstance(sub, Mapping) and sub.get("raised_exception"):
            return str(sub.get("exception_message") or "an exception was raised")
    return None


def summarize(res: Mapping[str, Any], *, max_examples: int = 5) -> FailedExpectation:
    """A FailedExpectation from one entry of the JSON validation result's ``results``."""
    from .suite import FailedExpectation

    config = res.get("expectation_config") or {}
    etype = str(config.get("type") or config.get("expectation_type") or "unknown_expectation")
    kwargs: Mapping[str, Any] = config.get("kwargs") or {}
    column = kwargs.get("column")
    result: Mapping[str, Any] = res.get("result") or {}
    examples = _examples(result, max_examples)
    prefix = f"{column}: " if column else ""

    error = _exception_message(res)
    if error is not None:
        first_line = error.strip().splitlines()[0] if error.strip() else error
        summary = f"{prefix}{etype} could not be evaluated: {first_line}"
        return FailedExpectation(etype, column, summary, ())

    count = result.get("unexpected_count")
    total = result.get("element_count")
    of_total = f"{count} of {total}" if total is not None else f"{count}"
    eg = f", e.g. {', '.join(fmt_value(v) for v in examples)}" if examples else ""

    if etype == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        parts = []
        if mismatched.get("missing"):
            parts.append(f"missing {', '.join(map(repr, mismatched['missing']))}")
        if mismatched.get("unexpected"):
            parts.append(f"unexpected {', '.join(map(repr, mismatched['unexpected']))}")
        detail = "; ".join(parts) if parts else f"observed {result.get('observed_value')}"
        summary = f"columns do not match the spec: {detail}"
        examples = [*mismatched.get("missing", []), *mismatched.get("unexpected", [])][:max_examples]
    elif etype == "expect_table_row_count_to_be_between":
        summary = (
            f"table has {result.get('observed_value')} rows, expected "
            f"{_range(kwargs.get('min_value'), kwargs.get('max_value'))}"
        )
    elif etype == "expect_column_values_to_not_be_null":
        mostly = kwargs.get("mostly")
        allowed = "none allowed" if mostly in (None, 1, 1.0) else f"at most {_pct((1 - float(mostly)) * 100)} allowed"
        pct = result.get("unexpected_percent")
        share = f" ({_pct(float(pct))})" if pct is not None else ""
        summary = f"{prefix}{of_total} values are null{share}, {allowed}"
        examples = []
    elif etype == "expect_column_values_to_be_between":
        summary = f"{prefix}{of_total} values outside {_range(kwargs.get('min_value'), kwargs.get('max_value'))}{eg}"
    elif etype == "expect_column_values_to_be_in_set":
        summary = f"{prefix}{of_total} values not in {_value_set(list(kwargs.get('value_set') or []))}{eg}"
    elif etype == "expect_column_values_to_be_in_type_list":
        if "observed_value" in result:
            summary = f"{prefix}dtype is {result['observed_value']}, expected {_type_names(kwargs.get('type_list'))}"
        else:
            # GX checks an object-dtype column value by value: a column of text and numbers.
            summary = f"{prefix}not a {_type_names(kwargs.get('type_list'))} column: {of_total} values are not of such a type{eg}"
    elif etype == "expect_column_mean_to_be_between":
        observed = result.get("observed_value")
        obs = fmt_number(round(observed, 4)) if isinstance(observed, float) else str(observed)
        what = "mean (positive rate)" if column == "__label__" else "mean"
        summary = f"{prefix}{what} {obs} outside {_range(kwargs.get('min_value'), kwargs.get('max_value'))}"
        examples = [observed] if observed is not None else []
    elif count is not None:
        summary = f"{prefix}{etype}: {of_total} unexpected values{eg}"
    else:
        summary = f"{prefix}{etype} failed (observed {result.get('observed_value')!r})"

    return FailedExpectation(etype, column, summary, tuple(_example_text(v) for v in examples))
