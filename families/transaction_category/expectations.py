"""Expectations of the transaction-categorisation family: the description text and the categories.

* the text column (role ``text``): present on every line, 1 to 200 characters, and at most 5 % of
  lines without a single letter (a file of reference numbers is not statement lines);
* the target's checks (one of the classes, every class present) are the platform's, from the spec.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from expectations.family import FamilyExpectations
from families.transaction_category.data import MAX_DESCRIPTION
from features.spec import DatasetSpec

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


class CategoryExpectations(FamilyExpectations):
    """Statement text with letters, of a length the features take (the platform checks the categories)."""

    def expectations(self, spec: DatasetSpec, gxe: ModuleType) -> list[Any]:
        return text_expectations(spec, gxe)


EXPECTATIONS = CategoryExpectations()
