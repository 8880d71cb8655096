"""One typed settings object for every Ledgerline deployable.

Environment variables use the ``LEDGERLINE_`` prefix (nested fields use ``__``). A family's own
settings live in its folder (``families/<stem>/settings.py``, a :class:`FamilySettings` with env
prefix ``LEDGERLINE_<STEM>_``). MLflow's own
``MLFLOW_TRACKING_URI`` is honoured when ``LEDGERLINE_TRACKING_URI`` is not set,
as data scientists expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledgerline.errors import LedgerlineError

#: settings of families given explicitly, by family name: ``{"<family>": {"<setting>": value}}``;
#: they win over the family's own ``LEDGERLINE_<STEM>_*`` environment (see :class:`FamilySettings`)
FamilyValues = dict[str, dict[str, Any]]


def family_values_field(env: str) -> Any:
    """The ``families`` field of a platform settings class (JSON in ``env``), checked by :func:`check_family_values`."""
    return Field(
        default_factory=dict,
        description=f"settings of families by family name, over their own LEDGERLINE_<STEM>_* variables: "
        f'{{"<family>": {{"<setting>": value}}}} (JSON in {env}); tests and embedded deployments use it',
    )


def check_family_values(values: FamilyValues) -> FamilyValues:
    """Family names in a ``families`` field must be registered (the settings themselves are checked by the family)."""
    from ledgerline.families import FAMILIES

    unknown = sorted(set(values) - set(FAMILIES))
    if unknown:
        raise ValueError(f"families names unknown model families {unknown}; known families: {sorted(FAMILIES)}")
    return values


def env_names(new: str, *old: str) -> AliasChoices:
    """The environment variable of a setting and, for one release, the names it had before (the new one wins)."""
    return AliasChoices(new, *old)


class FamilySettings(BaseSettings):
    """Base of a family's own settings (``families/<stem>/settings.py``, env prefix ``LEDGERLINE_<STEM>_``).

    A family's plug-ins read them with :meth:`of`, passing the ``families`` field of the platform
    settings they were given (training's ``Settings``, serving's ``ServingSettings``, monitoring's
    ``MonitoringSettings``): values there win over the environment, so settings built in code (tests,
    the demo) and settings shipped to Airflow workers reach the family too.
    """

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True, env_nested_delimiter="__")

    #: the registered family name these settings belong to
    family: ClassVar[str]

    @classmethod
    def of(cls, explicit: Mapping[str, Mapping[str, Any]] | None = None) -> Self:
        """The family's settings: ``explicit[family]`` over its ``LEDGERLINE_<STEM>_*`` environment."""
        from pydantic import ValidationError

        values = dict((explicit or {}).get(cls.family) or {})
        try:
            return cls(**values)
        except ValidationError as exc:
            prefix = cls.model_config.get("env_prefix", "")
            raise LedgerlineError(
                f"settings of the {cls.family} family are invalid (environment {prefix}*, or families['{cls.family}'] "
                f"of the platform settings): {exc}"
            ) from exc


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

    families: FamilyValues = family_values_field("LEDGERLINE_FAMILIES")
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

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: FamilyValues) -> FamilyValues:
        return check_family_values(value)

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
