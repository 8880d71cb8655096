"""Typed settings of the serving deployable (env prefix ``LEDGERLINE_SERVING_``).

Secrets (``api_keys``, ``admin_key``) have no default: a deployment must supply
them, the demo generates its own. List settings accept a JSON list or a
comma-separated string (``LEDGERLINE_SERVING_MODELS=loans,fraud``).
Where the models and the app database live comes from the platform
:class:`ledgerline.settings.Settings` (``LEDGERLINE_TRACKING_URI``,
``LEDGERLINE_APP_DB_URL``); ``app_db_url`` here overrides the latter for serving only.
A family's serving settings (thresholds, profile store, abstention, ...) live in its folder
(``families/<stem>/settings.py``, env prefix ``LEDGERLINE_<STEM>_``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ledgerline.families import FAMILIES
from ledgerline.settings import FamilyValues, check_family_values, family_values_field

#: Shortest API or admin key accepted: a short key can be guessed.
MIN_KEY_LENGTH = 16


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
        default_factory=lambda: list(FAMILIES),
        description="registered model names to serve (their @champion); default: one per family, named like it",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        description="keys accepted in the API-key header for predictions and feedback (comma-separated)"
    )
    admin_key: SecretStr = Field(description="key for POST /admin/reload")
    api_key_header: str = Field("X-API-Key", description="header that carries the key")

    reason_codes: int = Field(3, ge=0, le=20, description="how many reasons each answer carries (reason codes, or "
                              "reasons against typical values)")
    predict_threads: int = Field(1, ge=1, le=64, description="threads a model may use per worker process (XGBoost's nthread)")
    families: FamilyValues = family_values_field("LEDGERLINE_SERVING_FAMILIES")
    max_batch_rows: int = Field(5000, ge=1, description="largest list of records one request may carry")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body accepted")
    feedback_max_body_bytes: int = Field(64 * 1024, ge=256, description="largest /v1/feedback body accepted")
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="longest a client may take to send a request body before a 408"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="longest a client may take to send a request's headers before the connection is closed"
    )
    max_header_bytes: int = Field(64 * 1024, ge=4096, description="largest request head (request line and headers)")

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
    log_wal: Literal["fsync", "write", "off"] = Field(
        "write",
        description="write-ahead log of the prediction log (one file per worker, replayed after a crash): "
        "write = an answer leaves once its log record is in the OS page cache (survives kill -9 or an OOM kill "
        "of a worker, not a power loss; nearly free); fsync = only once it is on disk (group commit; survives a "
        "crash of the machine too, costs throughput: see make bench-serving); off = memory only (a crashed "
        "worker loses what it had not written yet)",
    )
    log_retry_max_seconds: float = Field(5.0, gt=0, description="longest back-off between write attempts")
    shutdown_flush_timeout_seconds: float = Field(30.0, ge=0, description="how long shutdown waits for the log")
    feedback_wait_seconds: float = Field(
        1.0, ge=0, description="how long feedback for a recent prediction waits for its row before it is kept as pending"
    )
    feedback_pending_window_seconds: float = Field(
        600.0,
        gt=0,
        description="feedback for a prediction id of ours (UUIDv7) this recent whose row is not in the database "
        "yet is kept as pending (202) instead of 404; older ids too while a worker's log still holds older rows",
    )

    batch_chunk_rows: int = Field(
        20_000, ge=1, le=1_000_000, description="rows per committed chunk of a batch job (progress moves once per chunk)"
    )
    batch_max_error_share: float = Field(
        0.01, ge=0.0, le=1.0, description="share of rejected rows above which a batch job fails (per job: max_error_share)"
    )
    batch_max_upload_bytes: int = Field(10 * 1024**3, ge=1024, description="largest file POST /v1/models/{name}/batches takes")
    batch_stale_seconds: float = Field(
        120.0, gt=0, description="a running job without progress this long is checked against its Airflow run"
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
        if not self.api_keys:
            raise ValueError("api_keys must hold at least one key")
        hint = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        for i, key in enumerate(self.api_keys, 1):
            if len(key.get_secret_value()) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"api key #{i} has {len(key.get_secret_value())} characters; keys need at least {MIN_KEY_LENGTH} ({hint})"
                )
        admin = self.admin_key.get_secret_value()
        if len(admin) < MIN_KEY_LENGTH:
            raise ValueError(f"admin_key has {len(admin)} characters; it needs at least {MIN_KEY_LENGTH} ({hint})")
        if any(admin == k.get_secret_value() for k in self.api_keys):
            raise ValueError(
                "admin_key equals one of the api_keys, so every API client could reload models; "
                f"give the admin a key of its own ({hint})"
            )
        check_family_values(self.families)
        return self
