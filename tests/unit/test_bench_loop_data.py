"""The loop benchmark's weekly applications (benchmarks/loop_data.py) fit the credit family's spec before and
after the concept shift, arrive on weekdays, and their outcomes become known 7-21 days later, never on a
weekend (so windows ending on a weekend see the same rows whatever hour they end)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from loop_data import week_applications, week_start  # noqa: E402

from families.credit_risk.data import credit_spec  # noqa: E402


@pytest.mark.parametrize("week", [3, 8])  # before and after the shift (week 8)
def test_a_week_fits_the_credit_spec_and_its_outcomes_arrive_late_on_weekdays(week: int) -> None:
    frame = week_applications(week, 2000, shift_week=8)
    spec = credit_spec()
    for col in spec.columns:
        values = frame[col.name].dropna()
        if col.kind == "numeric":
            assert col.min is not None and col.max is not None
            assert values.min() >= col.min and values.max() <= col.max, col.name
        else:
            assert set(values) <= set(col.values or ()), col.name
    low, high = spec.positive_rate or (0.0, 1.0)
    assert low < frame["default"].mean() < high
    applied, known = frame["applied_at"], frame["outcome_at"]
    assert applied.min() >= week_start(week) and applied.max() < week_start(week + 1)
    assert applied.dt.weekday.max() <= 4 and known.dt.weekday.max() <= 4
    delay_days = (known - applied).dt.total_seconds() / 86400
    assert delay_days.min() >= 7 and delay_days.max() <= 24  # 7-21 days, a weekend one moved to Monday


def test_the_shift_changes_who_applies_and_what_predicts_default() -> None:
    before = week_applications(3, 4000, shift_week=8)
    after = week_applications(8, 4000, shift_week=8)
    def share(f):  # noqa: ANN001, ANN202
        return f["purpose"].isin(["car", "home_improvement"]).mean()

    assert share(after) > share(before) + 0.2
    # short employment drives defaults after the shift, barely before
    def gap(f):  # noqa: ANN001, ANN202
        short = f["employment_length_years"] <= 1
        return f.loc[short, "default"].mean() - f.loc[~short, "default"].mean()

    assert gap(after) > gap(before) + 0.1
    assert np.isclose(before["default"].mean(), week_applications(3, 4000, shift_week=8)["default"].mean())  # seeded
