"""Data validation with Great Expectations 1.x, behind our own result types.

Nothing outside this package imports ``great_expectations``; importing this package does
not import it either (GX is loaded on the first call).
"""

from .family import FamilyExpectations
from .suite import FailedExpectation, ValidationReport, build_suite, validate

__all__ = ["FailedExpectation", "FamilyExpectations", "ValidationReport", "build_suite", "validate"]
