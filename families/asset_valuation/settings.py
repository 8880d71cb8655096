"""Asset-valuation settings (env prefix ``LEDGERLINE_ASSET_VALUATION_``): its promotion gate, the number of
reasons served, and its live-metric tolerances when monitored.

Nested fields use ``__``: ``LEDGERLINE_ASSET_VALUATION_GATE__MAX_MDAPE_RATIO_VS_NAIVE=0.6``. The gate's rules
can also be changed per model through the platform's gate overrides (``LEDGERLINE_GATES``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from ledgerline.settings import FamilySettings

PREFIX = "LEDGERLINE_ASSET_VALUATION_"


class AssetGate(BaseModel):
    """Promotion gate of an asset-valuation model (a regression with intervals)."""

    max_mdape_ratio_vs_naive: float = Field(
        0.75, gt=0.0, le=10.0,
        description="ceiling of the holdout MdAPE over the naive baseline's (the training median price per segment) "
        "on the same holdout: a model must beat 'the typical price of its kind' clearly",
    )
    mdape_tolerance: float = Field(
        0.01, ge=0.0, le=1.0, description="how much higher than the champion's MdAPE a challenger's may be (0.01 = 1 point)"
    )
    coverage_z: float = Field(
        3.0, gt=0.0, le=10.0,
        description="the holdout coverage of the interval may differ from its nominal level by this many standard "
        "errors (binomial, from the holdout and calibration sizes) either way",
    )
    width_tolerance: float = Field(
        0.05, ge=0.0, le=10.0,
        description="how much wider than the champion's the mean relative interval width may be (0.05 = 5 points)",
    )


class AssetValuationSettings(FamilySettings):
    """Everything of the asset-valuation family that a deployment configures."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)
    family = "asset-valuation"

    # --- training ----------------------------------------------------------------
    gate: AssetGate = Field(default_factory=lambda: AssetGate(), description="promotion gate (…_GATE__MDAPE_TOLERANCE, ...)")

    # --- serving -----------------------------------------------------------------
    reasons: int = Field(3, ge=0, le=20, description="reasons (largest contributions) per answer; 0: none")

    # --- monitoring --------------------------------------------------------------
    mdape_tolerance: float = Field(
        0.05, ge=0.0, le=1.0, description="live MdAPE may exceed the offline test MdAPE by this much before 'degraded'"
    )
    coverage_tolerance: float = Field(
        0.10, ge=0.0, le=1.0, description="live interval coverage may fall this far below the offline test coverage"
    )
