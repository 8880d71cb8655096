"""Credit-risk settings (env prefix ``LEDGERLINE_CREDIT_RISK_``): its promotion gate, its decision thresholds
and reason codes when served, its live-metric tolerances when monitored.

Nested fields use ``__``: ``LEDGERLINE_CREDIT_RISK_GATE__MIN_ROC_AUC=0.75``. The names these settings had
before they moved here (``LEDGERLINE_CREDIT_GATE__*``, ``LEDGERLINE_SERVING_DECISION_THRESHOLD``,
``LEDGERLINE_SERVING_THRESHOLDS``, ``LEDGERLINE_SERVING_REASON_CODE_METHOD``,
``LEDGERLINE_MONITORING_{ROC_AUC,PR_AUC,CALIBRATION}_TOLERANCE``) are still read, for one release.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from ledgerline.settings import FamilySettings, env_names

PREFIX = "LEDGERLINE_CREDIT_RISK_"


class CreditGate(BaseModel):
    """Promotion gate of a credit-risk model (a binary classifier of default)."""

    min_roc_auc: float = Field(0.70, ge=0.0, le=1.0, description="absolute floor for ROC-AUC on the holdout")
    min_pr_auc: float = Field(0.0, ge=0.0, le=1.0, description="absolute floor for PR-AUC on the holdout")
    max_brier: float = Field(0.25, ge=0.0, le=1.0, description="absolute ceiling for the Brier score")
    tolerance: float = Field(
        0.01, ge=0.0, le=1.0, description="how much worse than the champion's ROC-AUC a challenger may be"
    )
    min_approval_ratio: float | None = Field(
        None, ge=0.0, le=1.0,
        description="when the spec marks protected attributes: the lowest group approval rate over the highest "
        "at the model's threshold that passes (0.8: the four-fifths rule); None: not gated",
    )


class CreditRiskSettings(FamilySettings):
    """Everything of the credit-risk family that a deployment configures."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)
    family = "credit-risk"

    # --- training ----------------------------------------------------------------
    gate: CreditGate = Field(
        default_factory=lambda: CreditGate(),
        validation_alias=env_names(f"{PREFIX}GATE", "LEDGERLINE_CREDIT_GATE"),
        description="promotion gate (LEDGERLINE_CREDIT_RISK_GATE__MIN_ROC_AUC, ...)",
    )

    # --- serving -----------------------------------------------------------------
    decision_threshold: float = Field(
        0.20,
        gt=0.0,
        lt=1.0,
        validation_alias=env_names(f"{PREFIX}DECISION_THRESHOLD", "LEDGERLINE_SERVING_DECISION_THRESHOLD"),
        description="probability of default at which to decline, for model versions that record no threshold of "
        "their own (versions trained since thresholds are chosen at training carry theirs)",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        validation_alias=env_names(f"{PREFIX}THRESHOLDS", "LEDGERLINE_SERVING_THRESHOLDS"),
        description="per-model decision thresholds overriding the model's own threshold (JSON)",
    )
    reason_code_method: Literal["exact", "approximate"] = Field(
        "exact",
        validation_alias=env_names(f"{PREFIX}REASON_CODE_METHOD", "LEDGERLINE_SERVING_REASON_CODE_METHOD"),
        description="exact: XGBoost's TreeSHAP contributions; approximate: XGBoost's faster path attribution "
        "(approx_contribs), which can rank features differently",
    )

    # --- monitoring ----------------------------------------------------------------
    roc_auc_tolerance: float | None = Field(
        0.05, ge=0, validation_alias=env_names(f"{PREFIX}ROC_AUC_TOLERANCE", "LEDGERLINE_MONITORING_ROC_AUC_TOLERANCE"),
        description="live ROC-AUC drop vs offline test that degrades; None: reported, not judged",
    )
    pr_auc_tolerance: float | None = Field(
        0.10, ge=0, validation_alias=env_names(f"{PREFIX}PR_AUC_TOLERANCE", "LEDGERLINE_MONITORING_PR_AUC_TOLERANCE"),
        description="live PR-AUC drop vs offline test that degrades; None: reported, not judged",
    )
    calibration_tolerance: float | None = Field(
        0.05, ge=0,
        validation_alias=env_names(f"{PREFIX}CALIBRATION_TOLERANCE", "LEDGERLINE_MONITORING_CALIBRATION_TOLERANCE"),
        description="live calibration error rise vs offline test that degrades; None: reported, not judged",
    )

    @model_validator(mode="after")
    def _thresholds_are_probabilities(self) -> CreditRiskSettings:
        for name, value in self.thresholds.items():
            if not 0.0 < value < 1.0:
                raise ValueError(f"threshold for {name} must be between 0 and 1, not {value}")
        return self

    def threshold_for(self, model_name: str, model_threshold: float | None = None) -> float:
        """The per-model setting, else the threshold the version recorded at training, else the default."""
        if model_name in self.thresholds:
            return self.thresholds[model_name]
        return self.decision_threshold if model_threshold is None else model_threshold
