"""Monitoring thresholds and windows (pydantic-settings, env prefix ``LEDGERLINE_MONITORING_``).

Example: ``LEDGERLINE_MONITORING_WINDOW_DAYS=14 LEDGERLINE_MONITORING_COOLDOWN_DAYS=1 ledgerline monitor MODEL``.
A family's own monitoring settings (e.g. credit's tolerances, category's correction limits) live in its
folder (``families/<stem>/settings.py``, env prefix ``LEDGERLINE_<STEM>_``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledgerline.settings import FamilyValues, check_family_values, family_values_field

PsiBand = Literal["stable", "moderate", "significant"]


class MonitoringSettings(BaseSettings):
    """Everything the drift and performance jobs and the retrain decision are configured by."""

    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_MONITORING_", extra="ignore", populate_by_name=True)

    # --- drift --------------------------------------------------------------
    window_days: float = Field(7.0, gt=0, description="current window: predictions of the last N days")
    min_current_rows: int = Field(500, ge=1, description="fewer predictions in the window give 'insufficient_data'")
    current_version_only: bool = Field(
        True, description="compare only predictions served by the champion version (not earlier champions)"
    )
    psi_bins: int = Field(10, ge=2, le=100, description="quantile bins of the reference for numeric PSI")
    psi_moderate: float = Field(0.10, gt=0, description="PSI at or above this is a moderate shift")
    psi_significant: float = Field(0.25, gt=0, description="PSI at or above this is a significant shift")
    psi_drift_band: Literal["moderate", "significant"] = Field(
        "significant", description="the PSI band from which a feature counts as drifted"
    )
    score_psi_counts: bool = Field(True, description="a drifted score distribution alone is drift")
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Evidently: share of drifted columns at which the dataset drifts"
    )
    evidently_sample_size: int | None = Field(
        20_000,
        ge=1000,
        description="rows per side given to Evidently (PSI always uses every row); None: all rows",
    )
    evidently_preset_html: bool = Field(
        False,
        description="build the report with DataDriftPreset (adds its summary table; Evidently takes about twice as long)",
    )

    # --- performance ----------------------------------------------------------
    label_window_days: float = Field(
        30.0, ge=0, description="labels may arrive up to N days after a prediction; younger predictions do not count"
    )
    performance_window_days: float | None = Field(
        None, gt=0, description="length of the labelled window (ending label_window_days ago); default window_days"
    )
    min_labelled_rows: int = Field(200, ge=10, description="fewer labelled predictions give 'insufficient_data'")
    tolerances: dict[str, float] = Field(
        default_factory=dict,
        description="per-metric tolerance of a family's live metric vs its offline test metric, e.g. "
        '{"precision_at_budget": 0.15} (JSON in the environment); it wins over the family\'s own default',
    )
    families: FamilyValues = family_values_field("LEDGERLINE_MONITORING_FAMILIES")

    # --- decision -------------------------------------------------------------
    cooldown_days: float = Field(3.0, ge=0, description="after a retrain decision, later ones are suppressed")
    max_champion_age_days: float | None = Field(
        None, gt=0, description="retrain (reason 'schedule') when the champion is older; None: off"
    )
    retrain_after_labels: int | None = Field(
        None,
        ge=1,
        description="retrain (reason 'feedback') when at least N labels arrived since the champion was trained; "
        "None: off (it pays only when training reads production labels, e.g. a `predictions` source)",
    )
    experiment_name: str = Field("ledgerline-monitoring", description="MLflow experiment of the monitoring runs")
    seed: int = 42

    @model_validator(mode="after")
    def _bands_are_ordered(self) -> MonitoringSettings:
        if self.psi_moderate >= self.psi_significant:
            raise ValueError(
                f"psi_moderate ({self.psi_moderate}) must be below psi_significant ({self.psi_significant})"
            )
        negative = {k: v for k, v in self.tolerances.items() if not v >= 0}
        if negative:
            raise ValueError(f"tolerances must be 0 or more, not {negative}")
        check_family_values(self.families)
        return self

    @property
    def resolved_performance_window_days(self) -> float:
        return self.performance_window_days or self.window_days
