"""The real-services harness works end to end: mlflow server -> Postgres backend + S3 (moto) artifacts."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_run_is_tracked_in_postgres_and_artifacts_land_in_s3(
    mlflow_server: Any, s3_server: Any, tmp_path: Path
) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    experiment_id = client.create_experiment(f"harness-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "0.5")
    client.log_metric(run_id, "roc_auc", 0.81)
    note = tmp_path / "note.txt"
    note.write_text("ledgerline harness artifact\n")
    client.log_artifact(run_id, str(note), artifact_path="notes")
    client.set_terminated(run_id)

    # (a) read back through the server
    fetched = client.get_run(run_id)
    assert fetched.data.params == {"alpha": "0.5"}
    assert fetched.data.metrics == {"roc_auc": 0.81}
    assert fetched.info.status == "FINISHED"
    assert fetched.info.artifact_uri.startswith("mlflow-artifacts:/"), "artifacts must be proxied by the server"
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]
    downloaded = client.download_artifacts(run_id, "notes/note.txt", str(tmp_path / "dl"))
    assert Path(downloaded).read_text() == "ledgerline harness artifact\n"

    # (b) the artifact object really is in the S3 bucket
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix="mlartifacts/")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]  # other tests' runs share the bucket
    assert any(key.endswith(f"{run_id}/artifacts/notes/note.txt") for key in keys), keys

    # (c) the run row is in the Postgres backend database
    engine = sa.create_engine(mlflow_server.backend_store_uri)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT run_uuid, experiment_id, status FROM runs WHERE run_uuid = :run_id"),
                {"run_id": run_id},
            ).one()
            param = conn.execute(
                sa.text("SELECT value FROM params WHERE run_uuid = :run_id AND key = 'alpha'"), {"run_id": run_id}
            ).scalar_one()
    finally:
        engine.dispose()
    assert row.run_uuid == run_id
    assert str(row.experiment_id) == experiment_id
    assert row.status == "FINISHED"
    assert param == "0.5"


def test_registry_works_with_the_postgres_backend(mlflow_server: Any, s3_server: Any, settings: Any) -> None:
    import mlflow
    import numpy as np
    import sklearn
    from sklearn.linear_model import LogisticRegression

    assert settings.tracking_uri == mlflow_server.tracking_uri
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    model = LogisticRegression().fit(x, y)

    # the fluent API picks up MLFLOW_TRACKING_URI set by the settings fixture
    assert mlflow.get_tracking_uri() == mlflow_server.tracking_uri
    mlflow.set_experiment(f"harness-registry-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as run:
        # explicit requirements: skips MLflow's slow requirement inference (a subprocess)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=[f"scikit-learn=={sklearn.__version__}"])

    client = mlflow.MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    name = f"harness-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    # MLflow 3: a models:/m-<id> source needs the logged model's id alongside it
    version = client.create_model_version(name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
    client.set_registered_model_alias(name, "champion", version.version)

    by_alias = client.get_model_version_by_alias(name, "champion")
    assert by_alias.version == version.version == "1"
    assert by_alias.run_id == run.info.run_id

    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    assert (loaded.predict(x) == model.predict(x)).all()

    keys = [
        obj["Key"]
        for obj in s3_server.client()
        .list_objects_v2(Bucket=s3_server.bucket, Prefix="mlartifacts/")
        .get("Contents", [])
    ]
    assert any(key.endswith("MLmodel") for key in keys), keys

    engine = sa.create_engine(mlflow_server.backend_store_uri)
    try:
        with engine.connect() as conn:
            alias_version = conn.execute(
                sa.text("SELECT version FROM registered_model_aliases WHERE name = :name AND alias = 'champion'"),
                {"name": name},
            ).scalar_one()
    finally:
        engine.dispose()
    assert alias_version == 1


def test_server_rejects_unknown_host_headers(mlflow_server: Any) -> None:
    """MLflow 3's DNS-rebinding guard: why compose passes --allowed-hosts."""
    url = f"{mlflow_server.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url, headers={"Host": "mlflow:5000"})
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)
    assert excinfo.value.code == 403
    health = urllib.request.Request(f"{mlflow_server.tracking_uri}/health", headers={"Host": "mlflow:5000"})
    with urllib.request.urlopen(health, timeout=10) as response:  # /health is exempt
        assert response.status == 200


def test_database_factory_makes_and_drops(make_database: Any, fresh_app_db_url: str) -> None:
    assert "/ll_test_app_" in fresh_app_db_url
    url = make_database("scratch")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == url.rsplit("/", 1)[1]
    finally:
        engine.dispose()
    make_database.drop(url)
    admin = sa.create_engine(make_database.url_for("postgres"))
    try:
        with admin.connect() as conn:
            gone = conn.execute(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": url.rsplit("/", 1)[1]}
            ).scalar_one()
    finally:
        admin.dispose()
    assert gone == 0
