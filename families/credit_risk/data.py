"""A deterministic generator of realistic loan applications.

The default label comes from a latent logistic risk model with noise: risk rises
with debt-to-income, revolving utilisation, recent delinquencies and inquiries,
the loan's size relative to income and the 60-month term, and falls with income
and employment length. Purpose and home ownership shift the baseline. About 3% of
employment lengths and 2% of utilisations are missing, as in bureau data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.spec import ColumnSpec, DatasetSpec

PURPOSES = ("debt_consolidation", "credit_card", "home_improvement", "car", "medical", "small_business", "other")
PURPOSE_SHARE = (0.42, 0.22, 0.10, 0.08, 0.05, 0.04, 0.09)
PURPOSE_RISK = {
    "debt_consolidation": 0.10,
    "credit_card": 0.0,
    "home_improvement": -0.15,
    "car": -0.20,
    "medical": 0.20,
    "small_business": 0.55,
    "other": 0.10,
}
HOME = ("rent", "mortgage", "own", "other")
HOME_SHARE = (0.42, 0.44, 0.12, 0.02)
HOME_RISK = {"rent": 0.15, "mortgage": -0.10, "own": 0.0, "other": 0.30}

TARGET = "default"


def generate_loan_applications(
    n: int = 20_000,
    seed: int = 42,
    *,
    income_shift: float = 1.0,
    utilization_shift: float = 0.0,
) -> pd.DataFrame:
    """``n`` loan applications with a binary ``default`` label (1 = defaulted).

    ``income_shift`` multiplies incomes and ``utilization_shift`` is added to
    utilisation; both exist to produce drifted populations for monitoring tests.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    rng = np.random.default_rng(seed)
    income = np.round(np.exp(rng.normal(np.log(62_000), 0.55, n)) * income_shift, -2).clip(8_000, 2_000_000)
    emp = np.clip(np.round(rng.gamma(2.0, 3.2, n)), 0, 40)
    dti = np.clip(rng.beta(2.2, 6.5, n) * 60, 0, 60).round(2)
    util = np.clip(rng.beta(1.6, 2.4, n) + utilization_shift, 0, 1.5).round(3)
    delinq = rng.poisson(0.25 + 0.6 * (dti / 60), n).clip(0, 15)
    inquiries = rng.poisson(0.9, n).clip(0, 12)
    term = rng.choice([36, 60], n, p=[0.72, 0.28])
    loan = np.round(np.clip(rng.lognormal(np.log(14_000), 0.6, n), 1_000, 40_000), -2)
    purpose = rng.choice(PURPOSES, n, p=PURPOSE_SHARE)
    home = rng.choice(HOME, n, p=HOME_SHARE)

    logit = (
        -2.95
        + 0.06 * (dti - 18)
        + 2.1 * (np.minimum(util, 1.2) - 0.4)
        + 0.55 * delinq
        + 0.16 * inquiries
        - 0.75 * np.log(income / 62_000)
        + 1.1 * (loan / income)
        - 0.035 * emp
        + 0.45 * (term == 60)
        + np.vectorize(PURPOSE_RISK.get)(purpose)
        + np.vectorize(HOME_RISK.get)(home)
        + rng.normal(0, 0.35, n)
    )
    default = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    emp_obs = emp.astype("float64")
    emp_obs[rng.random(n) < 0.03] = np.nan
    util_obs = util.astype("float64")
    util_obs[rng.random(n) < 0.02] = np.nan

    return pd.DataFrame(
        {
            "application_id": [f"A{seed:04d}-{i:07d}" for i in range(n)],
            "annual_income": income,
            "debt_to_income": dti,
            "revolving_utilization": util_obs,
            "delinquencies_2y": delinq.astype("int64"),
            "inquiries_6m": inquiries.astype("int64"),
            "employment_length_years": emp_obs,
            "loan_amount": loan,
            "term_months": term.astype("int64"),
            "purpose": purpose,
            "home_ownership": home,
            TARGET: default,
        }
    )


def credit_spec(name: str = "credit-risk") -> DatasetSpec:
    """The hand-written spec of the generated credit data (the demo's and the tests' suite)."""
    return DatasetSpec(
        name=name,
        target=TARGET,
        positive_label="1",
        id_column="application_id",
        positive_rate=(0.04, 0.35),
        min_rows=200,
        columns=(
            ColumnSpec("annual_income", "numeric", min=1_000, max=5_000_000, monotone="decreasing"),
            ColumnSpec("debt_to_income", "numeric", min=0, max=100, monotone="increasing"),
            ColumnSpec("revolving_utilization", "numeric", min=0, max=2.0, max_null_fraction=0.10, monotone="increasing"),
            ColumnSpec("delinquencies_2y", "numeric", min=0, max=30, monotone="increasing"),
            ColumnSpec("inquiries_6m", "numeric", min=0, max=30, monotone="increasing"),
            ColumnSpec("employment_length_years", "numeric", min=0, max=60, max_null_fraction=0.10),
            ColumnSpec("loan_amount", "numeric", min=500, max=100_000),
            ColumnSpec("term_months", "numeric", min=12, max=84),
            ColumnSpec("purpose", "categorical", values=PURPOSES),
            ColumnSpec("home_ownership", "categorical", values=HOME),
        ),
    )
