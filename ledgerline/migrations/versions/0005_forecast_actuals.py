"""forecast actuals: the actual value per (model, series, date), the forecasting family's feedback

Revision ID: 0005_forecast_actuals
Revises: 0002
Create Date: 2026-11-30 20:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_forecast_actuals"
down_revision: str | None = "0004_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forecast_actuals",
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("series_id", sa.String(length=200), nullable=False),
        sa.Column("ds", sa.Date(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "series_id", "ds"),
    )
    op.create_index("ix_forecast_actuals_model_time", "forecast_actuals", ["model_name", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_forecast_actuals_model_time", table_name="forecast_actuals")
    op.drop_table("forecast_actuals")
