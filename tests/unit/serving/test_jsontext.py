"""Log rows and reason codes written column by column parse to what the API's encoder writes per record."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic_core import to_json

from serving.jsontext import json_rows


def _per_record(frame: pd.DataFrame) -> list[object]:
    out = []
    for rec in frame.astype(object).to_dict("records"):
        clean = {k: None if not isinstance(v, str) and pd.isna(v) else v for k, v in rec.items()}
        out.append(json.loads(to_json(clean)))
    return out


def test_rows_of_every_column_kind_parse_to_the_per_record_encoding() -> None:
    frame = pd.DataFrame({
        "amount": [1.5, None, 3.0, 1e300],
        "text": ["plain", None, 'quote " backslash \\ tab \t', "café ☕"],
        "count": [1, 2, 3, -4],
        "flag": [True, False, True, False],
        "at": pd.to_datetime(["2026-01-01T10:00:00Z", None, "2026-02-01", "2026-03-01T00:00:01.5Z"], utc=True,
                             format="ISO8601"),
        "masked": pd.array([1, None, 3, 4], dtype="Int64"),
        "strings": pd.Series(["x", None, "z", ""], dtype="string"),
        "mixed": np.array([1.25, None, 2.0, None], dtype=object),
    })
    rows = json_rows(frame)
    assert len(rows) == 4
    assert [json.loads(r) for r in rows] == _per_record(frame)
    assert list(json.loads(rows[0])) == list(frame.columns)  # keys in column order


def test_non_finite_numbers_are_null_never_an_invalid_token() -> None:
    rows = json_rows(pd.DataFrame({"x": [np.inf, -np.inf, np.nan, 0.5], "o": np.array([np.inf, None, 1.0, 2.0], dtype=object)}))
    assert rows == ['{"x":null,"o":null}', '{"x":null,"o":null}', '{"x":null,"o":1.0}', '{"x":0.5,"o":2.0}']
    assert json_rows(pd.DataFrame({"x": []})) == [] and json_rows(pd.DataFrame(index=range(2))) == ["{}", "{}"]
