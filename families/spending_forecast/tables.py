"""The forecasting family's table in the app database: actual values sent back per series and date
(revisions in ledgerline/migrations, like every table's)."""

from __future__ import annotations

import sqlalchemy as sa

from ledgerline.db import metadata

# Forecasting feedback: the actual value of a series at a date (idempotent on model, series, date: a
# correction replaces the earlier value). Monitoring compares them with the champion's forecast table.
forecast_actuals = sa.Table(
    "forecast_actuals",
    metadata,
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("series_id", sa.String(200), primary_key=True),
    sa.Column("ds", sa.Date, primary_key=True),
    sa.Column("y", sa.Float, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_forecast_actuals_model_time", "model_name", "received_at"),
)
