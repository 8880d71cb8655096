"""Asset valuation end to end on the real services (mlflow server, Postgres): a user's file of sales with a
time and a segment column trained through the pipeline and promoted by the family's gate, one sale valued
over HTTP with a 90 % interval and reasons, feedback with the realised price, the command line's train
options, and a file scored offline with ``ledgerline score --interval``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from apps.cli import main
from families.asset_valuation.data import generate

pytestmark = pytest.mark.integration

MODEL = "av-loop"
API_KEY = "asset-test-key-00000001"
H = {"X-API-Key": API_KEY}
PREDICT = f"/v1/models/{MODEL}/predict"
FAST = {"n_estimators": "150", "learning_rate": "0.2"}  # a few seconds of training
OPTIONS = ["--time-column", "sale_date", "--segment-column", "asset_type"]


@pytest.fixture(scope="module")
def platform(session_settings: Any, make_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("asset")
    return session_settings.model_copy(update={
        "app_db_url": make_database("asset_app"), "data_dir": root / "data", "home": root / "home",
    })


@pytest.fixture(scope="module")
def sales_file(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("asset-data") / "sales.csv"
    frame = generate(3000, seed=2)
    frame.loc[[5, 17], "price"] = None  # rows without a realised price are left out of training
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(platform: Any, sales_file: Any) -> Any:
    from training.pipeline import run_training
    from training.requests import train_request

    req = train_request("asset-valuation", model_name=MODEL, data=sales_file, target="price", params=FAST,
                        logical_date="2026-01-05", options={"time_column": "sale_date", "segment_column": "asset_type"})
    return run_training(platform, req)


@pytest.fixture(scope="module")
def client(trained: Any, platform: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServingSettings

    settings = ServingSettings(models=[MODEL], api_keys=[API_KEY], admin_key="asset-admin-key-0000001",
                               poll_interval_seconds=3600, log_flush_interval_seconds=0.05, feedback_wait_seconds=2.0)
    with TestClient(create_app(settings, platform)) as c:
        yield c


def _sale(**changes: Any) -> dict[str, Any]:
    row = generate(5, seed=99).drop(columns=["asset_id", "price"]).iloc[0]
    record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.to_dict().items()}
    return {**record, "interval": None, **changes}


def test_training_promotes_a_first_model_by_the_family_gate(trained: Any) -> None:
    import mlflow

    assert trained.decision.passed, trained.decision.reasons
    assert trained.champion == trained.version
    m = trained.metrics
    assert m["mdape_ratio_vs_naive"] < 0.75 and abs(m["coverage_z"]) <= 3.0 and m["r2"] > 0.5
    run = mlflow.MlflowClient().get_run(trained.run_id)
    assert run.data.params["chosen_candidate"] in ("log+trend", "log+no-trend")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(trained.run_id, "evaluation")}
    assert "evaluation/segment_metrics.json" in artifacts


def test_one_sale_is_valued_over_http_with_an_interval_and_reasons_and_takes_its_realised_price(client: Any) -> None:
    listed = client.get("/v1/models", headers=H).json()
    assert listed["models"][MODEL]["details"]["interval"] == 0.8, listed["models"][MODEL]
    assert listed["registry"][MODEL]["family"] == "asset-valuation"
    r = client.post(PREDICT, json=_sale(interval=0.9), headers=H)
    assert r.status_code == 200, r.text
    answer = r.json()["predictions"][0]
    assert answer["interval"] == 0.9
    assert answer["prediction_lower"] < answer["prediction"] < answer["prediction_upper"]
    assert len(answer["reasons"]) == 3 and {"feature", "value", "contribution"} <= set(answer["reasons"][0])
    default = client.post(PREDICT, json=_sale(), headers=H).json()["predictions"][0]
    assert default["interval"] == 0.8 and default["prediction_upper"] - default["prediction_lower"] < (
        answer["prediction_upper"] - answer["prediction_lower"])
    quick = client.post(PREDICT + "?explain=false", json=[_sale(), _sale(sale_date="2025-06-30")], headers=H)
    assert quick.status_code == 200 and all(a["reasons"] == [] for a in quick.json()["predictions"])
    bad = client.post(PREDICT, json=_sale(interval=1.5), headers=H)
    assert bad.status_code == 422
    fb = client.post("/v1/feedback", json={"prediction_id": answer["prediction_id"], "label": 312_500.0}, headers=H)
    assert fb.status_code in (200, 201), fb.text
    junk = client.post("/v1/feedback", json={"prediction_id": default["prediction_id"], "label": "a lot"}, headers=H)
    assert junk.status_code == 422 and "number" in junk.text


def test_your_own_file_trains_with_the_options_and_scores_with_an_interval(
    platform: Any, sales_file: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", platform.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", platform.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    params = [x for k, v in FAST.items() for x in ("--param", f"{k}={v}")]
    assert main(["train", "asset-valuation", "--data", str(sales_file), "--target", "price", "--positive-label", "1",
                 "--model-name", "av-cli"]) == 2
    assert "without --positive-label" in capsys.readouterr().err
    assert main(["train", "asset-valuation", "--data", str(sales_file), "--target", "price", *OPTIONS,
                 "--model-name", "av-cli", *params]) == 0
    capsys.readouterr()
    inp, out = tmp_path / "to_value.csv", tmp_path / "valued.csv"
    generate(200, seed=7).drop(columns=["price"]).to_csv(inp, index=False)
    assert main(["score", "av-cli", "--input", str(inp), "--output", str(out), "--interval", "0.9"]) == 0
    valued = pd.read_csv(out)
    assert len(valued) == 200 and "asset_id" in valued.columns
    assert {"prediction", "prediction_lower", "prediction_upper"} <= set(valued.columns)
    assert (valued["interval_level"] == 0.9).all()
    assert ((valued["prediction_lower"] <= valued["prediction"]) & (valued["prediction"] <= valued["prediction_upper"])).all()
    assert main(["score", "av-cli", "--input", str(inp), "--output", str(tmp_path / "x.csv"), "--interval", "2"]) == 2
