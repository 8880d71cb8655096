"""Expectations of series data: one row per series and timestamp, consecutive periods (ordered,
regular: a step of exactly one period), a minimum length, and (unless the spec allows it) no
negative values. They check two columns derived before validation (the step since the series'
previous row, and the series' length)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from expectations.family import FamilyExpectations
from families.spending_forecast.data import LENGTH_COLUMN, STEP_COLUMN, series_check_columns, series_spec_of

if TYPE_CHECKING:
    import pandas as pd

    from features.spec import DatasetSpec


class SeriesExpectations(FamilyExpectations):
    def derived_columns(self, spec: DatasetSpec) -> tuple[str, ...]:
        return (STEP_COLUMN, LENGTH_COLUMN)

    def with_derived(self, df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        return df.join(series_check_columns(df, series_spec_of(spec)))

    def expectations(self, spec: DatasetSpec, gxe: ModuleType) -> list[Any]:
        ss = series_spec_of(spec)
        note = {"ledgerline": f"series data at frequency {ss.freq}"}
        exps = [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=[ss.series, ss.timestamp], meta=note),
            # null for each series' first row; 1 everywhere else: ordered, no duplicates, no gaps
            gxe.ExpectColumnValuesToBeBetween(column=STEP_COLUMN, min_value=1, max_value=1,
                                              meta={"ledgerline": f"periods since the series' previous row ({ss.freq})"}),
            gxe.ExpectColumnValuesToBeBetween(column=LENGTH_COLUMN, min_value=ss.min_length, max_value=None,
                                              meta={"ledgerline": "rows per series (minimum length)"}),
        ]
        if not ss.allow_negative and spec.column(ss.value).min is None:
            exps.append(gxe.ExpectColumnValuesToBeBetween(column=ss.value, min_value=0, max_value=None,
                                                          meta={"ledgerline": "spending is never negative"}))
        return exps


EXPECTATIONS = SeriesExpectations()
