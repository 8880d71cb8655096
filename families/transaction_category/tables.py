"""The categorisation family's tables in the app database: users' corrections and the rules they make
(revisions in ledgerline/migrations, like every table's)."""

from __future__ import annotations

import sqlalchemy as sa

from ledgerline.db import metadata

# Transaction categorisation: every user correction (history, for the conflict policy and retraining)...
category_corrections = sa.Table(
    "category_corrections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("merchant_key", sa.String(200), nullable=False),  # the normalised description
    sa.Column("category", sa.String(200), nullable=False),
    sa.Column("prediction_id", sa.String(36), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reverted_at", sa.DateTime(timezone=True), nullable=True),  # its rule was reverted by an admin
    sa.Index("ix_category_corrections_model_key", "model_name", "merchant_key"),
)

# ... and the rule each merchant's corrections make (latest wins); ``version`` grows with every change,
# so serving workers fetch only what changed since the version they hold.
category_rules = sa.Table(
    "category_rules",
    metadata,
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("merchant_key", sa.String(200), primary_key=True),
    sa.Column("category", sa.String(200), nullable=False),
    sa.Column("corrections", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
