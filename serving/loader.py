"""Find a model's ``@champion`` in the registry and load it for serving.

All MLflow I/O of serving lives here. The tracking server is probed with a short
timeout first (MLflow's own client retries for minutes), so an unreachable server is
noticed within seconds and the models already loaded keep serving.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerline import lineage
from ledgerline.families import FAMILY_TAG
from ledgerline.registry import CHAMPION
from ledgerline.settings import Settings
from serving.errors import ModelLoadError, RegistryUnavailable
from serving.model import ServedModel, predict
from serving.schema import RecordSchema
from serving.settings import ServingSettings

if TYPE_CHECKING:
    from features.spec import DatasetSpec
    from serving.family import ServingFamily
    from serving.schema import Column

logger = logging.getLogger(__name__)

WARMUP_ROUNDS = 3


@dataclass(frozen=True)
class ChampionRef:
    name: str
    version: str
    run_id: str | None
    family: str | None  # None: the version carries no family tag (an error when it is loaded)


def probe_tracking_server(uri: str, timeout: float) -> None:
    """Raise RegistryUnavailable unless an http(s) tracking server answers ``/health`` in time."""
    if not uri.startswith(("http://", "https://")):
        return
    from serving.watcher import _without_password, health_request

    url, headers = health_request(uri)  # credentials in the URI go as basic auth, as the MLflow client sends them
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            if resp.status == 200:
                return
            problem = f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise RegistryUnavailable(
        f"the tracking server {_without_password(uri)} is unreachable ({problem}); serving the loaded versions"
    )


def mlflow_client(platform: Settings) -> Any:
    from ledgerline.registry import client

    return client(platform)


def champion_ref(client: Any, name: str) -> ChampionRef | None:
    """The version behind ``name@champion``; None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise RegistryUnavailable(f"the registry could not resolve {name}@{CHAMPION}: {exc.message}") from exc
    except OSError as exc:
        raise RegistryUnavailable(f"the registry could not resolve {name}@{CHAMPION}: {exc}") from exc
    tags = dict(mv.tags or {})
    run_id = mv.run_id or tags.get(lineage.RUN_ID)
    return ChampionRef(name, str(mv.version), run_id, tags.get(FAMILY_TAG))


def champion_ref_rest(registry_uri: str, name: str, timeout: float) -> ChampionRef | None:
    """``name@champion`` by one REST call bounded by ``timeout`` (MLflow's client retries for minutes).

    Raises RegistryUnavailable when the server does not answer in time or answers with an
    error (e.g. its database is down); None when the model or the alias does not exist.
    """
    import requests

    from serving.watcher import _without_password

    url = registry_uri.rstrip("/") + "/api/2.0/mlflow/registered-models/alias"
    where = f"{_without_password(registry_uri)}"
    try:
        resp = requests.get(url, params={"name": name, "alias": CHAMPION}, timeout=timeout, auth=_basic_auth())
    except requests.Timeout:
        raise RegistryUnavailable(
            f"the registry at {where} did not resolve {name}@{CHAMPION} within {timeout:g}s; serving the loaded versions"
        ) from None
    except requests.RequestException as exc:
        raise RegistryUnavailable(f"the registry at {where} is unreachable ({type(exc).__name__}); serving the loaded versions") from exc
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200:
        code = body.get("error_code") if isinstance(body, dict) else None
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND") or resp.status_code == 404:
            return None
        message = (body.get("message") if isinstance(body, dict) else None) or resp.text[:200]
        raise RegistryUnavailable(
            f"the registry at {where} could not resolve {name}@{CHAMPION} (HTTP {resp.status_code}: {message}); "
            "serving the loaded versions"
        )
    mv = body.get("model_version") or {}
    tags = {t["key"]: t["value"] for t in mv.get("tags") or []}
    run_id = mv.get("run_id") or tags.get(lineage.RUN_ID)
    return ChampionRef(name, str(mv["version"]), run_id, tags.get(FAMILY_TAG))


def _basic_auth() -> tuple[str, str] | None:
    import os

    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


def _load_spec(client: Any, run_id: str | None, dst: Path) -> DatasetSpec | None:
    """The run's ``data/spec.yaml`` as a DatasetSpec, or None when the run has none."""
    if not run_id:
        return None
    import yaml

    from features.spec import DatasetSpec

    try:
        local = client.download_artifacts(run_id, "data/spec.yaml", str(dst))
    except Exception as exc:  # an older run without a spec: the signature alone still validates types
        logger.warning("run %s has no data/spec.yaml (%s); requests are validated by type only", run_id, exc)
        return None
    return DatasetSpec.from_dict(yaml.safe_load(Path(local).read_text()), source=f"run {run_id} data/spec.yaml")


def _example(local: Path, schema: RecordSchema) -> dict[str, Any] | None:
    """The first row of the logged input example, if it passes the schema."""
    import json

    path = local / "input_example.json"
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        row = dict(zip(raw["columns"], raw["data"][0], strict=True))
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        return schema.validate_python(row)
    except Exception as exc:
        logger.info("input example of %s not usable as a request example: %s", schema.model_name, exc)
        return None


def _synthetic_example(schema: RecordSchema) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for c in schema.columns:
        if c.kind == "numeric":
            lo, hi = c.min if c.min is not None else 0.0, c.max if c.max is not None else 0.0
            row[c.name] = (lo + hi) / 2
        elif c.kind == "boolean":
            row[c.name] = False
        else:
            row[c.name] = c.values[0] if c.values else "x"
    return row


@dataclass
class FetchedVersion:
    """One registered version downloaded and loaded by its family: what online serving and offline scoring share."""

    ref: ChampionRef
    family: ServingFamily[Any]
    model: Any  # what the family's load returned
    spec: DatasetSpec | None
    columns: list[Column]  # the request fields
    local: Path  # the downloaded model folder


def version_ref(client: Any, name: str, version: str) -> ChampionRef | None:
    """Version ``version`` of ``name`` (with its run and family); None when it does not exist (deleted since?)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise RegistryUnavailable(f"the registry could not find {name} v{version}: {exc.message}") from exc
    except OSError as exc:
        raise RegistryUnavailable(f"the registry could not find {name} v{version}: {exc}") from exc
    tags = dict(mv.tags or {})
    return ChampionRef(name, str(mv.version), mv.run_id or tags.get(lineage.RUN_ID), tags.get(FAMILY_TAG))


def fetch_version(platform: Settings, client: Any, ref: ChampionRef, workdir: Path) -> FetchedVersion:
    """Download ``ref`` into ``workdir``, read its signature and training spec, and load it by its family.

    The one version loader of online serving (:func:`load_version`) and offline scoring
    (:func:`serving.batch.load_champion`). Raises ModelLoadError saying what to fix.
    """
    import mlflow
    from mlflow.models import Model

    from ledgerline.families import UnknownFamily, family_from_tags
    from serving.family import get_serving_family

    where = f"{ref.name} v{ref.version}"
    try:
        family = get_serving_family(family_from_tags({FAMILY_TAG: ref.family} if ref.family else {}, where))
    except UnknownFamily as exc:
        raise ModelLoadError(f"cannot load {where}: {exc}") from exc
    try:
        uri = client.get_model_version_download_uri(ref.name, ref.version)
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(workdir / "model"), tracking_uri=platform.tracking_uri
            )
        )
        meta = Model.load(str(local / "MLmodel"))
        if meta.signature is None:
            raise ModelLoadError(f"{where} was logged without a signature; log it with one")
        signature_inputs = meta.signature.inputs.to_dict()
        spec = _load_spec(client, ref.run_id, workdir / "spec")
        model = family.load(local)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {where}: {str(exc).splitlines()[0][:300]}") from exc
    try:
        columns = family.request_columns(signature_inputs, spec)
    except ValueError as exc:
        raise ModelLoadError(f"{where} cannot be served: {exc}") from exc
    return FetchedVersion(ref, family, model, spec, columns, local)


def load_version(platform: Settings, settings: ServingSettings, ref: ChampionRef, client: Any | None = None) -> ServedModel:
    """Download, build, check and warm one registered version. Raises ModelLoadError."""
    from serving.family import ServingContext

    client = client or mlflow_client(platform)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ledgerline-serving-") as tmp:
        fetched = fetch_version(platform, client, ref, Path(tmp))
        family, spec, columns = fetched.family, fetched.spec, fetched.columns
        try:
            schema = RecordSchema(ref.name, columns, settings.max_batch_rows)
            ctx = ServingContext(ref.name, ref.version, settings, spec, columns, fetched.local,
                                 options={"app_db_url": settings.app_db_url or platform.resolved_app_db_url()})
            built = family.build(fetched.model, ctx)
        except ValueError as exc:
            raise ModelLoadError(f"{ref.name} v{ref.version} cannot be served: {exc}") from exc
        example = family.example(spec, columns)
        schema.example = (
            (schema.validate_python(example) if example is not None else None)
            or _example(fetched.local, schema)
            or _synthetic_example(schema)
        )
    model = ServedModel(
        name=ref.name,
        version=ref.version,
        family=family.name,
        schema=schema,
        predictor=built.predictor,
        loaded_at=datetime.now(UTC),
        run_id=ref.run_id,
        source=f"models:/{ref.name}/{ref.version}",
        details=built.details,
        label_codec=family.label_codec(spec),
        answer_model=family.answer_model,
        score_range=family.score_range,
        status=built.status,
        on_feedback=built.on_feedback,
    )
    if not family.stateful:  # a stateful family's answers change state: never fed made-up records
        warm_up(model)
    logger.info("loaded %s v%s (%s) in %.1fs", ref.name, ref.version, ref.family, time.perf_counter() - t0)
    return model


def warm_up(model: ServedModel) -> None:
    """Run the example through the model (single row and a batch) before it takes traffic."""
    example = model.schema.example or _synthetic_example(model.schema)
    for _ in range(WARMUP_ROUNDS):
        answers, scores = predict([example], model)
        predict([example] * 64, model)
    if len(answers) != 1 or not all(math.isfinite(float(s)) for s in scores):
        raise ModelLoadError(f"{model.name} v{model.version} gave a non-finite score on its example; not serving it")
