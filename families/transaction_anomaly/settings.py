"""Transaction-anomaly settings (env prefix ``LEDGERLINE_TRANSACTION_ANOMALY_``): where served models keep
customer profiles. The names these had before they moved here (``LEDGERLINE_SERVING_PROFILE_*``) are still
read, for one release."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ledgerline.settings import FamilySettings, env_names

PREFIX = "LEDGERLINE_TRANSACTION_ANOMALY_"


class TransactionAnomalySettings(FamilySettings):
    """The profile store of served anomaly models."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)
    family = "transaction-anomaly"

    profile_store_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=env_names(f"{PREFIX}PROFILE_STORE_URL", "LEDGERLINE_SERVING_PROFILE_STORE_URL"),
        description="customer profiles: a Redis URL, or 'memory' (one process only)",
    )
    profile_key_prefix: str = Field(
        "ledgerline:profile:", min_length=1,
        validation_alias=env_names(f"{PREFIX}PROFILE_KEY_PREFIX", "LEDGERLINE_SERVING_PROFILE_KEY_PREFIX"),
        description="Redis key prefix; the model name follows",
    )
    profile_ttl_days: float = Field(
        180.0, gt=0,
        validation_alias=env_names(f"{PREFIX}PROFILE_TTL_DAYS", "LEDGERLINE_SERVING_PROFILE_TTL_DAYS"),
        description="a customer's profile expires this long after their last transaction",
    )
    profile_timeout_seconds: float = Field(
        0.05, gt=0, le=5,
        validation_alias=env_names(f"{PREFIX}PROFILE_TIMEOUT_SECONDS", "LEDGERLINE_SERVING_PROFILE_TIMEOUT_SECONDS"),
        description="Redis socket timeout; when it passes, the answer uses profile-free features",
    )

    profile_outage: Literal["profile-free", "fail"] = Field(
        "profile-free",
        description="while the profile store is unreachable: 'profile-free' answers from the model's profile-free "
        "forest (amount, refund, hour; same alert budget), 'fail' refuses anomaly predictions with 503",
    )

    def model_prefix(self, model_name: str) -> str:
        """The key prefix of one model's profiles (``<profile_key_prefix><model>:``): the serving store's and the
        promotion fill's, so both address the same keys."""
        return f"{self.profile_key_prefix}{model_name}:"

    @property
    def profile_ttl_seconds(self) -> int:
        return int(self.profile_ttl_days * 86_400)
