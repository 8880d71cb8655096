"""correction_tenants: reserved in the revision chain for issue 20/22 work (no changes yet)

Revision ID: 0010_correction_tenants
Revises: 0009_experiments
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010_correction_tenants"
down_revision: str | None = "0009_experiments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
