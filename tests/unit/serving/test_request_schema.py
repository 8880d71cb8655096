"""Request validation built from a signature and a training spec: every kind of bad input is a
clear 4xx-class domain error naming the field, never an exception of another kind."""

from __future__ import annotations

import json
from typing import Any

import pytest

from families.credit_risk.data import credit_spec
from serving.errors import BatchTooLarge, InvalidRecords, MalformedRequest
from serving.schema import RecordSchema, columns_from

SPEC = credit_spec()
SIGNATURE = [
    {"name": c.name, "type": "double" if c.kind == "numeric" else "string", "required": True} for c in SPEC.columns
]
GOOD = {
    "annual_income": 58000.0,
    "debt_to_income": 18.5,
    "revolving_utilization": 0.42,
    "delinquencies_2y": 0,
    "inquiries_6m": 1,
    "employment_length_years": 4.0,
    "loan_amount": 12000,
    "term_months": 36,
    "purpose": "car",
    "home_ownership": "rent",
}


@pytest.fixture
def schema() -> RecordSchema:
    return RecordSchema("credit-risk", columns_from(SIGNATURE, SPEC), max_rows=100)


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _fields(exc: InvalidRecords) -> set[str]:
    return {e["field"] for e in exc.errors}


def test_one_record_or_a_list_of_records_is_accepted(schema: RecordSchema) -> None:
    assert schema.parse(_body(GOOD)) == [{**GOOD, "delinquencies_2y": 0.0, "inquiries_6m": 1.0, "loan_amount": 12000.0, "term_months": 36.0}]
    assert len(schema.parse(_body([GOOD, GOOD, GOOD]))) == 3
    assert len(schema.parse(b"  \n" + _body([GOOD]))) == 1


def test_nullable_fields_take_null_but_must_be_present(schema: RecordSchema) -> None:
    assert schema.parse(_body({**GOOD, "employment_length_years": None}))[0]["employment_length_years"] is None
    missing = {k: v for k, v in GOOD.items() if k != "employment_length_years"}
    with pytest.raises(InvalidRecords) as exc:
        schema.parse(_body(missing))
    assert _fields(exc.value) == {"body.employment_length_years"}


def test_null_is_refused_where_the_training_data_had_none(schema: RecordSchema) -> None:
    with pytest.raises(InvalidRecords) as exc:
        schema.parse(_body({**GOOD, "annual_income": None}))
    assert _fields(exc.value) == {"body.annual_income"}


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("annual_income", "58000", "float_type"),
        ("annual_income", True, "float_type"),
        ("annual_income", [1], "float_type"),
        ("debt_to_income", 1e300, "less_than_equal"),
        ("debt_to_income", -5, "greater_than_equal"),
        ("purpose", "boat", "literal_error"),
        ("purpose", 3, "literal_error"),
    ],
)
def test_wrong_types_absurd_values_and_unknown_categories_name_the_field(
    schema: RecordSchema, field: str, value: Any, error_type: str
) -> None:
    with pytest.raises(InvalidRecords) as exc:
        schema.parse(_body([GOOD, {**GOOD, field: value}]))
    (error,) = exc.value.errors
    assert error["field"] == f"body[1].{field}"
    assert error["type"] == error_type
    assert field in str(exc.value)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_are_refused(schema: RecordSchema, literal: bytes) -> None:
    body = _body({**GOOD, "loan_amount": 0}).replace(b'"loan_amount": 0', b'"loan_amount": ' + literal)
    with pytest.raises(InvalidRecords) as exc:
        schema.parse(body)
    assert _fields(exc.value) == {"body.loan_amount"}


def test_unknown_fields_are_refused(schema: RecordSchema) -> None:
    with pytest.raises(InvalidRecords) as exc:
        schema.parse(_body({**GOOD, "anual_income": 1}))
    assert exc.value.errors[0]["type"] == "extra_forbidden"


def test_empty_lists_oversized_batches_and_malformed_json_are_refused(schema: RecordSchema) -> None:
    with pytest.raises(InvalidRecords, match="empty"):
        schema.parse(b"[]")
    with pytest.raises(BatchTooLarge, match="(101|more than 100) records; the limit is 100"):
        schema.parse(_body([GOOD] * 101))
    for body in (b"", b"   ", b'{"annual_income": ', b"nul", b"42", b'"text"', b"[1, 2]", b"\xff\xfe"):
        with pytest.raises((MalformedRequest, InvalidRecords)):
            schema.parse(body)


def test_error_lists_are_bounded_for_huge_bad_batches(schema: RecordSchema) -> None:
    with pytest.raises(InvalidRecords) as exc:
        schema.parse(_body([{"x": 1}] * 100))
    assert len(exc.value.errors) <= 51
    assert exc.value.errors[-1]["type"] == "truncated"


def test_the_json_schema_carries_ranges_domains_and_an_example(schema: RecordSchema) -> None:
    schema.example = dict(GOOD)
    js = schema.record_json_schema()
    assert js["additionalProperties"] is False
    assert set(js["required"]) == set(SPEC.feature_names)
    assert js["properties"]["debt_to_income"]["maximum"] == 100
    assert "car" in json.dumps(js["properties"]["purpose"])
    assert js["examples"] == [GOOD]


def test_a_column_the_spec_does_not_know_still_gets_a_sane_magnitude_bound() -> None:
    cols = columns_from([{"name": "x", "type": "double"}, {"name": "s", "type": "string"}], None)
    schema = RecordSchema("m", cols, max_rows=10)
    assert schema.parse(b'{"x": 1.5, "s": "anything"}') == [{"x": 1.5, "s": "anything"}]
    with pytest.raises(InvalidRecords):
        schema.parse(b'{"x": 1e20, "s": "a"}')
    with pytest.raises(ValueError, match="cannot validate"):
        columns_from([{"name": "t", "type": "tensor"}], None)
