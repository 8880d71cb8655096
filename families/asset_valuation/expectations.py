"""Expectations of the asset-valuation family, on top of the platform's suite (columns, nulls, ranges, and the
numeric target through its codec: present and a number on every row).

* the encoded target is finite and of a sane magnitude, and takes more than one value (a constant has
  nothing to learn);
* the time column (role ``time``): conform already parsed every value as a timestamp; the suite checks that
  they are plausible dates (year 1900-2100: not an epoch number read as 1970, not a typo'd 2204), through a
  derived year column.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from expectations.family import FamilyExpectations
from features.labels import LABEL_COLUMN

if TYPE_CHECKING:
    import pandas as pd

    from features.spec import DatasetSpec

MAX_ABS_TARGET = 1e15
YEARS = (1900, 2100)


def time_column(spec: DatasetSpec) -> str | None:
    column = spec.roles.get("time") or spec.roles.get("timestamp")
    if column is None and len(spec.datetime) == 1:
        column = spec.datetime[0]
    return column if column in spec.datetime else None


def year_column(column: str) -> str:
    return f"{column}__year"


class AssetExpectations(FamilyExpectations):
    """A finite, varying target and plausible sale dates."""

    def derived_columns(self, spec: DatasetSpec) -> tuple[str, ...]:
        column = time_column(spec)
        return (year_column(column),) if column else ()

    def with_derived(self, df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        import pandas as pd

        column = time_column(spec)
        if column is None or column not in df.columns:
            return df
        years = pd.to_datetime(df[column], utc=True, errors="coerce").dt.year.astype("float64")
        return df.assign(**{year_column(column): years})

    def expectations(self, spec: DatasetSpec, gxe: ModuleType) -> list[Any]:
        out: list[Any] = []
        if spec.target is not None:
            out += [
                gxe.ExpectColumnValuesToBeBetween(column=LABEL_COLUMN, min_value=-MAX_ABS_TARGET, max_value=MAX_ABS_TARGET),
                gxe.ExpectColumnUniqueValueCountToBeBetween(column=LABEL_COLUMN, min_value=2, max_value=None),
            ]
        column = time_column(spec)
        if column is not None:
            out.append(gxe.ExpectColumnValuesToBeBetween(column=year_column(column), min_value=YEARS[0],
                                                         max_value=YEARS[1]))
        return out


EXPECTATIONS = AssetExpectations()
