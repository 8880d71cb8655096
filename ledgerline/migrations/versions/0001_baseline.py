"""Baseline: the app database as Ledgerline created it before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-11-30

:func:`schema` is frozen: it is what ``metadata.create_all`` made from ``ledgerline/db.py``
up to this revision, and :func:`ledgerline.migrations.adopt` checks an unversioned
database against it. Never edit it; a schema change is a new revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def schema() -> sa.MetaData:
    """The tables (with their indexes) at revision 0001."""
    metadata = sa.MetaData()
    json_type = sa.JSON().with_variant(JSONB(), "postgresql")
    sa.Table(
        "promotion_ledger",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("previous_champion", sa.String(32), nullable=True),
        sa.Column("champion_after", sa.String(32), nullable=True),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("challenger_metrics", sa.JSON, nullable=True),
        sa.Column("champion_metrics", sa.JSON, nullable=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "predictions",
        metadata,
        sa.Column("prediction_id", sa.String(36), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("inputs", json_type, nullable=False),
        sa.Column("outputs", json_type, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Index("ix_predictions_model_time", "model_name", "created_at"),
    )
    sa.Table(
        "feedback",
        metadata,
        sa.Column("prediction_id", sa.String(36), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_feedback_model_time", "model_name", "received_at"),
    )
    sa.Table(
        "monitoring_results",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("summary", json_type, nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_monitoring_results_model_time", "model_name", "created_at"),
    )
    sa.Table(
        "retrain_decisions",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("retrain", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("suppressed", sa.Boolean, nullable=False),
        sa.Column("evidence", json_type, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dag_run_id", sa.String(250), nullable=True),
        sa.Index("ix_retrain_decisions_model_time", "model_name", "decided_at"),
    )
    return metadata


def upgrade() -> None:
    for table in schema().sorted_tables:
        op.get_context().impl.create_table(table)  # the table and its indexes


def downgrade() -> None:
    for table in reversed(schema().sorted_tables):
        op.drop_table(table.name)
