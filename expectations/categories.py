"""Expectations of the transaction-categorisation family: the description text and the categories.

* the text column (role ``text``): present on every line, 1 to 200 characters, and at most 5 % of
  lines without a single letter (a file of reference numbers is not statement lines);
* the target: never null, one of the spec's classes, the encoded label an index into them, and
  every class present (a category the data lacks cannot be learnt, nor its recall gated).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from features.categories import MAX_DESCRIPTION
from features.spec import LABEL_COLUMN, DatasetSpec

LABEL_TYPES = ("int64", "int32", "int16", "int8", "Int64")
#: share of lines whose description has no letter at all that the suite tolerates
MAX_LETTERLESS_SHARE = 0.05


def text_expectations(spec: DatasetSpec, gxe: ModuleType) -> list[Any]:
    column = spec.roles.get("text")
    if not column or column not in spec.feature_names:
        return []
    return [
        gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=1, max_value=MAX_DESCRIPTION),
        gxe.ExpectColumnValuesToMatchRegex(column=column, regex=r"[A-Za-z]", mostly=1.0 - MAX_LETTERLESS_SHARE),
    ]


def category_expectations(spec: DatasetSpec, gxe: ModuleType) -> list[Any]:
    assert spec.target is not None
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=spec.target),
        gxe.ExpectColumnValuesToBeInSet(column=spec.target, value_set=list(spec.classes)),
        gxe.ExpectColumnDistinctValuesToContainSet(column=spec.target, value_set=list(spec.classes)),
        gxe.ExpectColumnValuesToNotBeNull(column=LABEL_COLUMN),
        gxe.ExpectColumnValuesToBeInTypeList(column=LABEL_COLUMN, type_list=list(LABEL_TYPES)),
        gxe.ExpectColumnValuesToBeBetween(column=LABEL_COLUMN, min_value=0, max_value=len(spec.classes) - 1),
    ]
