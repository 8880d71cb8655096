"""The loop benchmark's bank: weekly credit applications with a concept shift and late outcomes.

Features come from the credit family's generator (``families.credit_risk.data``), so the columns,
types, ranges and categories match the family's spec. From the shift week on, a new applicant
segment arrives (a partner channel selling car and home-improvement loans to recently employed,
mortgaged applicants) and the default relation changes: short employment, large loans for the
income and car/home-improvement purposes drive defaults; utilisation and income matter less. The
spec's monotone directions still hold (they are constraints of the family's model), so what a stale
model gets wrong is the weights and the purpose/home/employment effects it learned before the shift.

Applications arrive on weekdays 08:00-18:00 UTC. Each outcome becomes known 7-21 days after its
application, moved to the next Monday 09:00 when it would fall on a weekend, so windows that end on a
weekend see the same rows whatever hour they end at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from families.credit_risk.data import HOME, HOME_RISK, PURPOSE_RISK, PURPOSES, TARGET, generate_loan_applications

#: Monday 00:00 UTC of the first week of history (before the first training)
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
#: the post-shift segment's purposes and homes
SEGMENT_PURPOSE = ("car", "home_improvement")
NEW_PURPOSE_RISK = {
    "debt_consolidation": -0.10, "credit_card": -0.35, "home_improvement": 0.55, "car": 0.75,
    "medical": 0.10, "small_business": 0.20, "other": 0.0,
}
NEW_HOME_RISK = {"rent": -0.10, "mortgage": 0.35, "own": -0.20, "other": 0.20}
FEATURES = ("annual_income", "debt_to_income", "revolving_utilization", "delinquencies_2y", "inquiries_6m",
            "employment_length_years", "loan_amount", "term_months", "purpose", "home_ownership")


def week_start(week: int) -> datetime:
    """Monday 00:00 UTC of ``week`` (0 = the first week of history)."""
    return EPOCH + timedelta(weeks=week)


def _logit_before(f: pd.DataFrame) -> np.ndarray:
    util = f["revolving_utilization"].fillna(0.4).to_numpy()
    emp = f["employment_length_years"].fillna(5).to_numpy()
    income = f["annual_income"].to_numpy()
    return (
        -2.95 + 0.06 * (f["debt_to_income"].to_numpy() - 18) + 2.1 * (np.minimum(util, 1.2) - 0.4)
        + 0.55 * f["delinquencies_2y"].to_numpy() + 0.16 * f["inquiries_6m"].to_numpy()
        - 0.75 * np.log(income / 62_000) + 1.1 * (f["loan_amount"].to_numpy() / income) - 0.035 * emp
        + 0.45 * (f["term_months"].to_numpy() == 60)
        + f["purpose"].map(PURPOSE_RISK).to_numpy() + f["home_ownership"].map(HOME_RISK).to_numpy()
    )


def _logit_after(f: pd.DataFrame) -> np.ndarray:
    util = f["revolving_utilization"].fillna(0.4).to_numpy()
    emp = f["employment_length_years"].fillna(5).to_numpy()
    income = f["annual_income"].to_numpy()
    return (
        -3.25 + 0.05 * (f["debt_to_income"].to_numpy() - 18) + 0.4 * (np.minimum(util, 1.2) - 0.4)
        + 0.45 * f["delinquencies_2y"].to_numpy() + 0.10 * f["inquiries_6m"].to_numpy()
        - 0.20 * np.log(income / 62_000) + 3.2 * (f["loan_amount"].to_numpy() / income)
        - 0.22 * (emp - 5) - 0.30 * (f["term_months"].to_numpy() == 60)
        + f["purpose"].map(NEW_PURPOSE_RISK).to_numpy() + f["home_ownership"].map(NEW_HOME_RISK).to_numpy()
    )


def week_applications(week: int, n: int, *, shift_week: int, seed: int = 7) -> pd.DataFrame:
    """``n`` applications of ``week`` with ``applied_at``, the label and ``outcome_at`` (when it becomes known)."""
    rng = np.random.default_rng([seed, week])
    f = generate_loan_applications(n, seed=seed * 1000 + week)
    shifted = week >= shift_week
    if shifted:  # the new segment: a third of the traffic
        seg = rng.random(n) < 0.35
        k = int(seg.sum())
        f.loc[seg, "purpose"] = rng.choice(SEGMENT_PURPOSE, k)
        f.loc[seg, "home_ownership"] = rng.choice(["mortgage", "rent"], k, p=[0.8, 0.2])
        f.loc[seg, "employment_length_years"] = np.clip(np.round(rng.gamma(1.2, 1.5, k)), 0, 40)
        f.loc[seg, "loan_amount"] = np.round(np.clip(rng.lognormal(np.log(22_000), 0.4, k), 1_000, 40_000), -2)
    logit = (_logit_after(f) if shifted else _logit_before(f)) + rng.normal(0, 0.35, n)
    f[TARGET] = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    day = rng.integers(0, 5, n)  # Monday..Friday
    seconds = rng.integers(8 * 3600, 18 * 3600, n)
    applied = [week_start(week) + timedelta(days=int(d), seconds=int(s)) for d, s in zip(day, seconds, strict=True)]
    delay = rng.integers(7, 22, n)
    outcome = []
    for a, d in zip(applied, delay, strict=True):
        t = a + timedelta(days=int(d))
        if t.weekday() >= 5:  # weekend: the servicer reports on Monday morning
            t = (t + timedelta(days=7 - t.weekday())).replace(hour=9, minute=0, second=0)
        outcome.append(t)
    f["application_id"] = [f"W{week:02d}-{i:06d}" for i in range(n)]
    f.insert(1, "applied_at", pd.to_datetime(applied, utc=True))
    f["outcome_at"] = pd.to_datetime(outcome, utc=True)
    assert set(f["purpose"]) <= set(PURPOSES) and set(f["home_ownership"]) <= set(HOME)
    return f
