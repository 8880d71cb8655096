"""tenant_rows: reserved in the revision chain for issue 20/22 work (no changes yet)

Revision ID: 0011_tenant_rows
Revises: 0010_correction_tenants
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011_tenant_rows"
down_revision: str | None = "0010_correction_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
