"""Transaction-category settings (env prefix ``LEDGERLINE_TRANSACTION_CATEGORY_``): when a served model
abstains and how often it fetches correction rules; which correction rate and how many corrections are a
retrain reason when monitored. The names these had before they moved here
(``LEDGERLINE_SERVING_CATEGORY_MIN_CONFIDENCE``, ``LEDGERLINE_SERVING_CATEGORY_RULES_POLL_SECONDS``,
``LEDGERLINE_MONITORING_CATEGORY_MAX_CORRECTION_RATE``, ``LEDGERLINE_MONITORING_CATEGORY_RETRAIN_CORRECTIONS``)
are still read, for one release."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ledgerline.settings import FamilySettings, env_names

PREFIX = "LEDGERLINE_TRANSACTION_CATEGORY_"


class TransactionCategorySettings(FamilySettings):
    """Abstention and correction rules when served; correction limits when monitored."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)
    family = "transaction-category"

    # --- serving -----------------------------------------------------------------
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0,
        validation_alias=env_names(f"{PREFIX}MIN_CONFIDENCE", "LEDGERLINE_SERVING_CATEGORY_MIN_CONFIDENCE"),
        description="below this probability the answer abstains (category null, with candidates)",
    )
    rules_poll_seconds: float = Field(
        0.5, gt=0, le=60,
        validation_alias=env_names(f"{PREFIX}RULES_POLL_SECONDS", "LEDGERLINE_SERVING_CATEGORY_RULES_POLL_SECONDS"),
        description="how often each worker fetches changed correction rules",
    )

    # --- monitoring ----------------------------------------------------------------
    max_correction_rate: float = Field(
        0.10, ge=0, le=1,
        validation_alias=env_names(f"{PREFIX}MAX_CORRECTION_RATE", "LEDGERLINE_MONITORING_CATEGORY_MAX_CORRECTION_RATE"),
        description="a correction rate above this (share of the window's predictions that users corrected) is a "
        "retrain reason",
    )
    retrain_corrections: int = Field(
        50, ge=1,
        validation_alias=env_names(f"{PREFIX}RETRAIN_CORRECTIONS", "LEDGERLINE_MONITORING_CATEGORY_RETRAIN_CORRECTIONS"),
        description="this many new corrections in the window are a retrain reason",
    )
