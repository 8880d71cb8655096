"""One typed settings object for every Ledgerline deployable.

Environment variables use the ``LEDGERLINE_`` prefix (nested fields use ``__``,
e.g. ``LEDGERLINE_CREDIT_GATE__MIN_ROC_AUC=0.75``). MLflow's own
``MLFLOW_TRACKING_URI`` is honoured when ``LEDGERLINE_TRACKING_URI`` is not set,
as data scientists expect.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GateThresholds(BaseModel):
    """Promotion gate for a binary classifier."""

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


class Settings(BaseSettings):
    """Everything a Ledgerline process needs to know about its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LEDGERLINE_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    home: Path = Field(Path(".ledgerline"), description="working folder for the embedded defaults (demo)")
    tracking_uri: str = Field(
        "http://127.0.0.1:5000",
        validation_alias=AliasChoices("LEDGERLINE_TRACKING_URI", "MLFLOW_TRACKING_URI", "tracking_uri"),
        description="MLflow tracking server; MLFLOW_TRACKING_URI is honoured when the Ledgerline one is unset",
    )
    registry_uri: str | None = Field(None, description="MLflow registry; defaults to the tracking URI")
    experiment_prefix: str = Field("ledgerline", description="experiments are named <prefix>/<model name>")

    # Used when Ledgerline itself starts an `mlflow server` (demo, tests).
    backend_store_uri: str | None = Field(None, description="MLflow backend store; default: SQLite under home")
    artifacts_destination: str | None = Field(
        None, description="MLflow artifact store: a local folder or s3://bucket/prefix; default: folder under home"
    )
    s3_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LEDGERLINE_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "s3_endpoint_url"),
        description="S3 API endpoint (MinIO, moto) for an s3:// artifact store",
    )

    app_db_url: str | None = Field(
        None, description="SQLAlchemy URL of the app database (ledger, predictions); default: SQLite under home"
    )
    data_dir: Path | None = Field(None, description="where immutable snapshots are written; default: home/data")

    credit_gate: GateThresholds = Field(default_factory=lambda: GateThresholds())
    gates: dict[str, dict[str, dict[str, float | tuple[float, float] | None]]] = Field(
        default_factory=dict,
        description=(
            "gate overrides per family or per model name (the model's wins): "
            '{"<family or model>": {"<metric>": {"bound": x, "band": [lo, hi], "tolerance": t}}}; '
            "JSON in LEDGERLINE_GATES"
        ),
    )
    seed: int = 42

    # Airflow's REST API (ledgerline/airflow_api.py): batch jobs and retrains are triggered through it.
    airflow_url: str = Field("http://127.0.0.1:8080", description="Airflow api-server (the demo's: :8080)")
    airflow_user: str | None = Field(
        None, description="Airflow user for the API; default: the demo's generated admin, else no login"
    )
    airflow_password: str | None = Field(
        None, description="its password; default: the one `airflow standalone` generated under home/airflow"
    )
    airflow_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one Airflow API call")

    # --- derived locations -------------------------------------------------
    def resolved_app_db_url(self) -> str:
        return self.app_db_url or f"sqlite:///{(self.home / 'app.db').resolve()}"

    def resolved_backend_store_uri(self) -> str:
        return self.backend_store_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def resolved_artifacts_destination(self) -> str:
        return self.artifacts_destination or str((self.home / "mlartifacts").resolve())

    def resolved_data_dir(self) -> Path:
        return (self.data_dir or self.home / "data").resolve()

    def resolved_registry_uri(self) -> str:
        return self.registry_uri or self.tracking_uri

    def experiment_name(self, model_name: str) -> str:
        return f"{self.experiment_prefix}/{model_name}"
