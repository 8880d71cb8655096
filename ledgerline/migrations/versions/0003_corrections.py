"""category corrections and rules (transaction categorisation)

Revision ID: 0003_corrections
Revises: 0002
Create Date: 2026-11-30 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_corrections"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "category_corrections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("merchant_key", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("prediction_id", sa.String(length=36), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reverted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_category_corrections_model_key", "category_corrections", ["model_name", "merchant_key"], unique=False)
    op.create_table(
        "category_rules",
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("merchant_key", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("corrections", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "merchant_key"),
    )
    op.create_index(op.f("ix_category_rules_version"), "category_rules", ["version"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_category_rules_version"), table_name="category_rules")
    op.drop_table("category_rules")
    op.drop_index("ix_category_corrections_model_key", table_name="category_corrections")
    op.drop_table("category_corrections")
