"""Shared data for the Great Expectations suite tests: 20k generated loans, conformed once."""

from __future__ import annotations

import pandas as pd
import pytest

from families.credit_risk.data import credit_spec, generate_loan_applications
from features.spec import DatasetSpec, conform


@pytest.fixture(scope="session")
def credit() -> DatasetSpec:
    return credit_spec()


@pytest.fixture(scope="session")
def _clean_loans(credit: DatasetSpec) -> pd.DataFrame:
    return conform(generate_loan_applications(20_000, seed=7), credit)


@pytest.fixture
def loans(_clean_loans: pd.DataFrame) -> pd.DataFrame:
    """A fresh copy of the 20k conformed rows that a test may damage."""
    return _clean_loans.copy()
