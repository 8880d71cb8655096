"""What a model family adds to the platform's expectation suite.

The platform's suite (:mod:`expectations.suite`) checks what every spec states: the exact
columns, nulls, types, ranges and domains, and the target through its label codec. A family
whose data has more structure (series that must be regular, statement text that must hold
letters) adds its expectations here, in ``families/<stem>/expectations.py``, and its training
plug-in returns that object from ``TrainingFamily.expectations()``.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from features.spec import DatasetSpec


class FamilyExpectations:
    """The default: nothing added. Subclass and override what the family needs."""

    def derived_columns(self, spec: DatasetSpec) -> tuple[str, ...]:
        """Columns :meth:`with_derived` adds to the validated frame (they join the expected column set)."""
        return ()

    def with_derived(self, df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        """``df`` with the derived columns that the family's expectations check (e.g. steps between periods)."""
        return df

    def expectations(self, spec: DatasetSpec, gxe: ModuleType) -> list[Any]:
        """The family's expectations (``gxe`` is ``great_expectations.expectations``)."""
        return []


NO_EXTRA = FamilyExpectations()
