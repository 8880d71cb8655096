"""Typed settings of the serving deployable (env prefix ``LEDGERLINE_SERVING_``).

Secrets (``api_keys``, ``admin_key``) have no default: a deployment must supply
them, the demo generates its own. List settings accept a JSON list or a
comma-separated string (``LEDGERLINE_SERVING_MODELS=credit-risk,fraud``).
Where the models and the app database live comes from the platform
:class:`ledgerline.settings.Settings` (``LEDGERLINE_TRACKING_URI``,
``LEDGERLINE_APP_DB_URL``); ``app_db_url`` here overrides the latter for serving only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ServingSettings(BaseSettings):
    """Everything the prediction API needs besides the platform settings."""

    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_SERVING_", extra="ignore", populate_by_name=True)

    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["credit-risk"], description="registered model names to serve (their @champion)"
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        description="keys accepted in the API-key header for predictions and feedback (comma-separated)"
    )
    admin_key: SecretStr = Field(description="key for POST /admin/reload")
    api_key_header: str = Field("X-API-Key", description="header that carries the key")

    decision_threshold: float = Field(
        0.20, gt=0.0, lt=1.0, description="probability of default at which to decline (a typical credit cut-off)"
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="per-model decision thresholds overriding decision_threshold"
    )
    reason_codes: int = Field(3, ge=0, le=20, description="how many reason codes each credit answer carries")
    reason_code_method: Literal["exact", "approximate"] = Field(
        "exact",
        description="exact: XGBoost's TreeSHAP contributions; approximate: XGBoost's faster path attribution "
        "(approx_contribs), which can rank features differently",
    )
    predict_threads: int = Field(1, ge=1, le=64, description="XGBoost threads per worker process")
    max_batch_rows: int = Field(5000, ge=1, description="largest list of records one request may carry")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body accepted")

    poll_interval_seconds: float = Field(
        5.0, gt=0, description="how often to check whether @champion moved (one bounded alias lookup per model)"
    )
    registry_timeout_seconds: float = Field(
        3.0, gt=0, description="timeout of the tracking-server health probe and of each alias lookup"
    )
    reload_wait_seconds: float = Field(
        10.0, gt=0, le=120, description="longest POST /admin/reload waits for the check before answering 202"
    )
    reload_signal_file: Path | None = Field(
        None, description="file whose mtime change makes every worker reload (set by `ledgerline serve`)"
    )

    app_db_url: str | None = Field(None, description="prediction log + feedback database; default: the platform's")
    log_batch_rows: int = Field(2000, ge=1, description="rows per prediction-log write")
    log_flush_interval_seconds: float = Field(0.25, gt=0, description="longest a record waits before a write")
    log_buffer_rows: int = Field(200_000, ge=1, description="prediction-log records held while the database is away")
    log_overflow: Literal["reject", "drop"] = Field(
        "reject",
        description="when the buffer is full: reject new predictions with 503 (nothing accepted is lost) "
        "or serve and drop their log records (counted in /metrics and logged)",
    )
    log_full_wait_seconds: float = Field(
        2.0,
        ge=0,
        description="how long a large request waits for room when the buffer is full while the database is up "
        "(the writer is behind) before it is refused; 0 refuses at once",
    )
    log_retry_max_seconds: float = Field(5.0, gt=0, description="longest back-off between write attempts")
    shutdown_flush_timeout_seconds: float = Field(30.0, ge=0, description="how long shutdown waits for the log")
    feedback_wait_seconds: float = Field(
        1.0, ge=0, description="how long feedback waits for its prediction to reach the database before 404"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    access_log: bool = Field(False, description="uvicorn access log (off: it costs throughput)")

    @field_validator("models", "api_keys", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="after")
    def _check(self) -> ServingSettings:
        if not self.models:
            raise ValueError("models is empty; name at least one registered model to serve")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models lists a name twice: {self.models}")
        if not self.api_keys or any(not k.get_secret_value() for k in self.api_keys):
            raise ValueError("api_keys must hold at least one non-empty key")
        if not self.admin_key.get_secret_value():
            raise ValueError("admin_key must not be empty")
        for name, value in self.thresholds.items():
            if not 0.0 < value < 1.0:
                raise ValueError(f"threshold for {name} must be between 0 and 1, not {value}")
        return self

    def threshold_for(self, model_name: str) -> float:
        return self.thresholds.get(model_name, self.decision_threshold)
