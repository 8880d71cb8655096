"""Bad training input against a real mlflow server: refused before anything is written, or undone cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from families.credit_risk.data import credit_spec, generate_loan_applications
from training.pipeline import TrainRequest, run_training

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(session_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", session_settings.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", session_settings.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    return session_settings


def _versions(settings, name: str) -> list[str]:
    return sorted(mv.version for mv in MlflowClient(settings.tracking_uri).search_model_versions(f"name='{name}'"))


def _runs(settings, name: str) -> list:
    c = MlflowClient(settings.tracking_uri)
    exp = c.get_experiment_by_name(settings.experiment_name(name))
    return [] if exp is None else list(c.search_runs([exp.experiment_id]))


def _main(argv: list[str], capsys) -> tuple[int, str]:
    from apps.cli import main

    capsys.readouterr()  # only this command's output
    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


def test_other_columns_under_an_existing_model_name_stop_before_anything_is_written(train_credit, cli_env, tmp_path, capsys):
    """The german-credit case: `credit-risk` was trained on generated data (no spec file in this data folder)."""
    existing = train_credit("credit-pipeline")
    before = _versions(cli_env, "credit-pipeline")
    german = tmp_path / "german.csv"
    german.write_text("duration,credit_amount,age,class\n" + "".join(
        f"{6 + i % 40},{1000 + 37 * i},{20 + i % 50},{'bad' if i % 3 == 0 else 'good'}\n" for i in range(600)))
    rc, err = _main(["train", "credit-risk", "--data", str(german), "--target", "class", "--positive-label", "bad",
                     "--model-name", "credit-pipeline", "--logical-date", "2026-11-29"], capsys)
    assert rc == 2
    assert err.startswith("error: model 'credit-pipeline' takes the columns of its frozen spec (credit-pipeline v")
    assert "lacks ['annual_income'" in err and "has columns ['duration', 'credit_amount', 'age', 'class']" in err
    assert "pass --model-name NEW-NAME" in err and "\n" not in err
    assert _versions(cli_env, "credit-pipeline") == before
    assert not (tmp_path / "data" / "snapshots" / "credit-pipeline").exists()
    assert not (tmp_path / "data" / "specs").exists()
    c = MlflowClient(cli_env.tracking_uri)
    assert c.get_model_version_by_alias("credit-pipeline", "champion").version == existing.champion


def test_a_snapshot_that_failed_validation_gives_way_to_the_corrected_file(cli_env, tmp_path, capsys):
    name = "credit-corrected"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(credit_spec().to_yaml())
    good = generate_loan_applications(3000, seed=5)
    bad = good.copy()
    bad.loc[:40, "annual_income"] = -5000.0
    bad_path, good_path = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.to_csv(bad_path, index=False)
    good.to_csv(good_path, index=False)
    argv = ["train", "credit-risk", "--spec", str(spec_path), "--model-name", name, "--logical-date", "2026-04-06"]

    rc, err = _main([*argv, "--data", str(bad_path)], capsys)
    assert rc == 3 and "annual_income" in err
    snapshot = tmp_path / "data" / "snapshots" / name / "2026-04-06"
    rejected_digest = json.loads((snapshot / "manifest.json").read_text())["digest"]
    assert (snapshot / "rejected.json").exists()

    rc, err = _main([*argv, "--data", str(good_path)], capsys)
    assert rc == 0, err
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["digest"] != rejected_digest and not (snapshot / "rejected.json").exists()
    assert (snapshot.parent / ".rejected" / f"2026-04-06-{rejected_digest[:12]}" / "data.parquet").exists()
    assert _versions(cli_env, name) == ["1"]
    statuses = sorted(r.info.status for r in _runs(cli_env, name))
    assert statuses == ["FAILED", "FINISHED"]


def _no_change_rows(settings, name: str) -> list[dict]:
    from ledgerline import db

    return [r for r in db.ledger(settings.resolved_app_db_url(), name) if r["action"] in ("unchanged", "nothing-new")]


def test_training_the_champions_inputs_again_registers_nothing_unless_forced(train_credit, session_settings, monkeypatch,
                                                                              capsys):
    m = train_credit("credit-pipeline")
    before = _versions(session_settings, "credit-pipeline")
    runs_before = len(_runs(session_settings, "credit-pipeline"))
    rows_before = _no_change_rows(session_settings, "credit-pipeline")
    req = TrainRequest(family="credit-risk", model_name="credit-pipeline", rows=6000, seed=42, logical_date="2026-01-05",
                       params={"model_choice": "xgboost", "cv_folds": 2})  # what train_credit trains
    again = run_training(session_settings, req)
    assert again.skipped and again.version == m.champion and again.run_id
    assert "nothing registered (--force trains again)" in again.decision.reasons[0]
    assert again.metrics["roc_auc"] > 0.6
    assert _versions(session_settings, "credit-pipeline") == before
    assert len(_runs(session_settings, "credit-pipeline")) == runs_before  # not even a run was opened
    # ... and the ledger says so: which version it matched, the digest, the champion unchanged
    (row,) = _no_change_rows(session_settings, "credit-pipeline")[len(rows_before):]
    assert row["action"] == "unchanged" and row["passed"] and row["version"] == m.champion
    assert row["previous_champion"] == row["champion_after"] == m.champion and row["trigger"] == "manual"
    assert row["reasons"] == again.decision.reasons and row["run_id"] == again.run_id
    assert f"equal those of v{m.champion} (@champion" in row["reasons"][0]
    digest = MlflowClient(session_settings.tracking_uri).get_run(again.run_id).data.tags["ledgerline.snapshot_digest"]
    assert f"snapshot digest {digest[:12]}" in row["reasons"][0]

    # other parameters on the same snapshot are a different model: trained and registered
    other_req = TrainRequest(family="credit-risk", model_name="credit-pipeline", rows=6000, seed=42,
                             logical_date="2026-01-05", params={"max_depth": 3, "model_choice": "xgboost", "cv_folds": 2})
    other = run_training(session_settings, other_req)
    assert not other.skipped and other.version not in before
    # the same again equals the latest version (whether or not the gate promoted it): nothing registered
    repeat = run_training(session_settings, other_req)
    assert repeat.skipped and repeat.version == other.version
    assert "the latest registered version" in repeat.decision.reasons[0]
    assert _versions(session_settings, "credit-pipeline") == sorted([*before, other.version])
    assert [r["version"] for r in _no_change_rows(session_settings, "credit-pipeline")[len(rows_before):]] == [
        m.champion, other.version]

    # `ledgerline ledger` shows the row in words
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", session_settings.resolved_app_db_url())
    from apps.cli import main

    capsys.readouterr()
    assert main(["ledger", "credit-pipeline"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"v{other.version}" in last and " unchanged " in last and "nothing registered" in last


def test_an_empty_window_records_nothing_new_and_registers_nothing(train_credit, session_settings, monkeypatch):
    from ledgerline.errors import NothingNew
    from training import pipeline

    train_credit("credit-pipeline")
    champion = MlflowClient(session_settings.tracking_uri).get_model_version_by_alias("credit-pipeline", "champion").version
    before = _versions(session_settings, "credit-pipeline")
    rows_before = _no_change_rows(session_settings, "credit-pipeline")

    def empty_window(*args, **kwargs):
        raise NothingNew("source sql 'loans' has no rows in [2026-01-05, 2026-01-12): nothing new")

    monkeypatch.setattr(pipeline, "prepare", empty_window)  # what a source's read gives for an empty window
    with pytest.raises(NothingNew, match="nothing new"):  # `ledgerline train` says so and exits 0
        run_training(session_settings, TrainRequest(family="credit-risk", model_name="credit-pipeline", trigger="schedule"))
    (row,) = _no_change_rows(session_settings, "credit-pipeline")[len(rows_before):]
    assert (row["action"], row["trigger"], row["champion_after"]) == ("nothing-new", "schedule", champion)
    assert row["reasons"] == ["source sql 'loans' has no rows in [2026-01-05, 2026-01-12): nothing new"]
    assert _versions(session_settings, "credit-pipeline") == before


@pytest.mark.parametrize("case", ["thirty_rows", "duplicate_headers", "nested_parquet", "min_rows_above_data"])
def test_unusable_data_exits_2_with_nothing_written(cli_env, tmp_path, capsys, case):
    df = generate_loan_applications(400, seed=8)
    name = f"credit-input-{case.replace('_', '-')}"
    extra: list[str] = []
    if case == "thirty_rows":
        path = tmp_path / "d.csv"
        df.head(30).to_csv(path, index=False)
        expected = "the data has 30 rows; training needs at least 200"
    elif case == "duplicate_headers":
        path = tmp_path / "d.csv"
        df.rename(columns={"loan_amount": "annual_income"}).to_csv(path, index=False)
        expected = "has duplicate column names ['annual_income']"
    elif case == "nested_parquet":
        path = tmp_path / "d.parquet"
        table = pa.Table.from_pandas(df, preserve_index=False).append_column("tags", pa.array([[1, 2]] * len(df)))
        pq.write_table(table, path)
        expected = "has nested columns ['tags']"
    else:
        path = tmp_path / "d.csv"
        df.to_csv(path, index=False)
        spec = tmp_path / "spec.yaml"
        spec.write_text("target: default\npositive_label: 1\nmin_rows: 1000\n")
        extra = ["--spec", str(spec)]
        expected = "the data has 400 rows; training needs at least 1000 (the spec's min_rows is 1000"
    targets = [] if extra else ["--target", "default", "--positive-label", "1"]
    rc, err = _main(["train", "credit-risk", "--data", str(path), *targets, *extra, "--model-name", name], capsys)
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and expected in err
    assert _versions(cli_env, name) == [] and _runs(cli_env, name) == []
    assert not (tmp_path / "data" / "snapshots" / name).exists()


def test_sigterm_during_training_ends_the_run_failed_and_registers_nothing(cli_env, tmp_path):
    name = "credit-sigterm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "train", "credit-risk", "--model-name", name, "--rows", "4000",
         "--logical-date", "2026-05-04", "--param", "n_estimators=20000", "--param", "early_stopping_rounds=10000",
         "--param", "learning_rate=0.001", "--param", "n_jobs=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            if "training credit-risk on" in line:
                break
            assert time.monotonic() < deadline, "training never started"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1].startswith("error: terminated by signal SIGTERM; the open MLflow run")
    runs = _runs(cli_env, name)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert _versions(cli_env, name) == []
    assert Path(tmp_path / "data" / "snapshots" / name / "2026-05-04" / "manifest.json").exists()  # the snapshot is whole


def test_a_day_whose_data_changed_by_production_labels_gets_a_snapshot_of_its_own(session_settings, monkeypatch):
    """Labelled production rows (corrections, ...) that arrived after the day's snapshot was written make new
    content for the same date: it gets its own snapshot (date and digest), found again by a retry; data that
    changed for any other reason is still refused (snapshots are immutable)."""
    import pandas as pd

    from ledgerline.errors import SnapshotConflict
    from training.family import get_family
    from training.inputs import prepare
    from training.requests import TrainRequest

    plugin = type(get_family("credit-risk"))
    req = TrainRequest(family="credit-risk", model_name="augmented-day", rows=1000, logical_date="2026-02-02")
    first = prepare(session_settings, req)
    assert first.snapshot.logical_date == "2026-02-02"

    def with_a_label(self, settings, name, raw, spec):  # noqa: ANN001, ANN202 - the hook's signature
        return pd.concat([raw, raw.iloc[:1]], ignore_index=True), "feedback:1 labelled rows"

    monkeypatch.setattr(plugin, "augment", with_a_label)
    second = prepare(session_settings, req)
    assert second.snapshot.logical_date == f"2026-02-02_{second.snapshot.digest[:12]}"
    assert second.snapshot.rows == first.snapshot.rows + 1 and second.snapshot.created
    again = prepare(session_settings, req)
    assert again.snapshot.uri == second.snapshot.uri and not again.snapshot.created
    assert first.snapshot.load().shape[0] == first.snapshot.rows  # the first snapshot is untouched

    monkeypatch.setattr(plugin, "augment", lambda self, settings, name, raw, spec: (raw.iloc[1:], ""))
    with pytest.raises(SnapshotConflict, match="already exists with different content"):
        prepare(session_settings, req)
