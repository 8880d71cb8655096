"""Every tag key Ledgerline writes to MLflow runs, experiments and model versions: defined here once,
imported everywhere else. Version tags are the few that code reads; runs carry the rest."""

from __future__ import annotations

# --- runs and versions: what a model was trained from, and why
MODEL_NAME = "ledgerline.model_name"
FAMILY = "ledgerline.family"  # on the run and on the registered version (serving, gate, monitoring read it)
TRIGGER = "ledgerline.trigger"  # manual | schedule | drift | performance | feedback
LOGICAL_DATE = "ledgerline.logical_date"
SNAPSHOT_URI = "ledgerline.snapshot_uri"
SNAPSHOT_DIGEST = "ledgerline.snapshot_digest"
STAGE = "ledgerline.stage"  # validate | validation_failed | validated | train
VALIDATION = "ledgerline.validation"  # passed | failed
RUN_ID = "ledgerline.run_id"  # on a version: its training run

# --- the data window a run was trained from (data sources, training/sources/), on the run
WINDOW_START = "ledgerline.window.start"  # ISO datetime, UTC (inclusive)
WINDOW_END = "ledgerline.window.end"  # ISO datetime, UTC (exclusive)
WINDOW_POLICY = "ledgerline.window.policy"  # e.g. "sliding 28 days", "expanding from 2026-01-01"
SOURCE_ROWS_PREFIX = "ledgerline.source."  # + "<source key>.rows", e.g. ledgerline.source.predictions.rows


def source_rows_tag(key: str) -> str:
    """The run tag holding how many rows source ``key`` (base, sql, files, predictions, ...) gave the window."""
    return f"{SOURCE_ROWS_PREFIX}{key}.rows"


# --- the promotion gate's verdict, on the version
GATE_DECISION = "ledgerline.gate.decision"  # promoted | rejected
GATE_REASONS = "ledgerline.gate.reasons"  # JSON list
GATE_CHAMPION_VERSION = "ledgerline.gate.champion_version"
ROLLED_BACK_AT = "ledgerline.rolled_back_at"

# --- what a version is and how it decides (set by its family at training)
MODEL_KIND = "ledgerline.model_kind"  # a family's choice of model, e.g. xgboost | scorecard
DECISION_THRESHOLD = "ledgerline.decision_threshold"  # the threshold chosen at training (its policy is on the run)
MODEL_CARD = "ledgerline.model_card"  # on a version: the run artifact path of its model card (Markdown)

# --- Airflow
AIRFLOW_RUN = "ledgerline.airflow.run"  # "<dag_id>/<run_id>" on the MLflow run
AIRFLOW_DECISION_ID = "ledgerline.airflow.decision_id"
