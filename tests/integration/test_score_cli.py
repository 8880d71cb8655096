"""``ledgerline score`` against real champions on a real mlflow server: both families, CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from apps.cli import main
from families.credit_risk.data import generate_loan_applications
from families.transaction_anomaly.data import generate_transactions

pytestmark = pytest.mark.integration

CREDIT = "score-credit"
ANOMALY = "score-anomaly"


@pytest.fixture
def cli_env(session_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", session_settings.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", session_settings.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_STORE_URL", "redis://127.0.0.1:6379/13")
    return session_settings


@pytest.fixture
def credit(train_credit, cli_env):
    return train_credit(CREDIT)


@pytest.fixture
def anomaly(train_anomaly, cli_env):
    return train_anomaly(ANOMALY)


def _loans(n: int = 400) -> pd.DataFrame:
    return generate_loan_applications(n, seed=11)  # has application_id and the true label `default`


def _champion_probabilities(settings, name: str, frame: pd.DataFrame) -> np.ndarray:
    import mlflow.sklearn

    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/{name}@champion")
    inputs = list(model.named_steps["features"].input_features_)
    return model.predict_proba(frame[inputs])[:, 1]


def test_a_credit_file_gets_probabilities_and_decisions_and_keeps_its_id_and_label(credit, tmp_path, capsys):
    import tempfile

    loans = _loans()
    src, out = tmp_path / "loans.csv", tmp_path / "scored.csv"
    loans.to_csv(src, index=False)
    downloads = set(Path(tempfile.gettempdir()).glob("ledgerline-score-*"))

    assert main(["score", CREDIT, "--input", str(src), "--output", str(out)]) == 0

    assert set(Path(tempfile.gettempdir()).glob("ledgerline-score-*")) == downloads  # the model download is gone

    scored = pd.read_csv(out, dtype={"application_id": str})
    assert list(scored.columns[: len(loans.columns)]) == list(loans.columns)
    assert {"probability_of_default", "decision"} <= set(scored.columns)
    assert scored["application_id"].tolist() == loans["application_id"].astype(str).tolist()
    assert scored["default"].tolist() == loans["default"].tolist()
    expected = _champion_probabilities(credit.settings, CREDIT, loans)
    np.testing.assert_allclose(scored["probability_of_default"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert set(scored["decision"]) <= {"approve", "decline"}
    assert not Path(str(out) + ".errors.csv").exists()
    header, first = out.read_text().splitlines()[:2]
    assert first.startswith(src.read_text().splitlines()[1] + ",")  # the input line, untouched, then the answers
    assert f"scored {len(loans):,} of {len(loans):,} rows" in capsys.readouterr().out


def test_a_few_bad_rows_go_to_the_errors_file_and_the_rest_is_scored(credit, tmp_path):
    loans = _loans(400).astype({"annual_income": object})
    loans.loc[5, "annual_income"] = "lots"
    loans.loc[17, "annual_income"] = None
    src, out = tmp_path / "loans.csv", tmp_path / "scored.csv"
    loans.to_csv(src, index=False)

    assert main(["score", CREDIT, "--input", str(src), "--output", str(out), "--max-error-share", "0.01"]) == 0

    scored = pd.read_csv(out)
    assert len(scored) == 398
    assert loans.loc[5, "application_id"] not in set(scored["application_id"])
    errors = pd.read_csv(str(out) + ".errors.csv")
    assert errors["row"].tolist() == [6, 18]  # 1-based data rows
    assert "annual_income: is not a number" in errors.loc[0, "error"]
    assert "annual_income: is empty" in errors.loc[1, "error"]
    assert errors.loc[0, "application_id"] == loans.loc[5, "application_id"]


def test_too_many_bad_rows_fail_with_exit_2_and_write_no_output(credit, tmp_path, capsys):
    loans = _loans(200).astype({"annual_income": object})
    loans.loc[:9, "annual_income"] = "n/a"  # 5% of the rows
    src, out = tmp_path / "loans.csv", tmp_path / "scored.csv"
    loans.to_csv(src, index=False)

    assert main(["score", CREDIT, "--input", str(src), "--output", str(out), "--chunk-rows", "50"]) == 2

    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]  # above it: the progress lines
    assert line.startswith("error: 10 of 200 rows (5.0%) were rejected, more than the allowed 1.0%")
    assert "row 1: annual_income: is not a number" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".scored")] == []  # no temp file left
    assert len(pd.read_csv(str(out) + ".errors.csv")) == 10  # kept, to fix the rows


def test_parquet_in_and_out_and_tiny_chunks_give_the_same_scores_as_one_chunk(credit, tmp_path):
    loans = _loans(300)
    src = tmp_path / "loans.parquet"
    loans.to_parquet(src, index=False)
    whole, chunked = tmp_path / "whole.parquet", tmp_path / "chunked.parquet"

    assert main(["score", CREDIT, "--input", str(src), "--output", str(whole)]) == 0
    assert main(["score", CREDIT, "--input", str(src), "--output", str(chunked), "--chunk-rows", "7"]) == 0

    a, b = pd.read_parquet(whole), pd.read_parquet(chunked)
    pd.testing.assert_frame_equal(a, b)
    assert pq.ParquetFile(whole).schema_arrow.field("default").type == pq.ParquetFile(src).schema_arrow.field("default").type
    assert a["application_id"].tolist() == loans["application_id"].tolist()


def test_bad_input_is_one_error_line_with_exit_2_and_nothing_written(credit, tmp_path, capsys):
    loans = _loans(50)
    src, out = tmp_path / "loans.csv", tmp_path / "scored.csv"
    loans.drop(columns=["annual_income"]).to_csv(src, index=False)

    assert main(["score", CREDIT, "--input", str(src), "--output", str(out)]) == 2
    assert "lacks the column(s) annual_income" in capsys.readouterr().err

    loans.to_csv(src, index=False)
    assert main(["score", "no-such-model", "--input", str(src), "--output", str(out)]) == 2
    assert "model no-such-model has no @champion" in capsys.readouterr().err

    assert main(["score", CREDIT, "--input", str(tmp_path / "missing.csv"), "--output", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["score", CREDIT, "--input", str(src), "--output", str(tmp_path / "out.json")]) == 2
    assert "use .csv or .parquet" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["loans.csv"]


def _transactions() -> pd.DataFrame:
    return generate_transactions(600, seed=5)


def test_an_anomaly_file_is_scored_point_in_time_within_the_file_whatever_its_order(anomaly, tmp_path):
    import mlflow.sklearn

    from families.transaction_anomaly.behaviour import compute_offline

    txns = _transactions()
    shuffled = txns.sample(frac=1.0, random_state=3)
    src, out = tmp_path / "txns.csv", tmp_path / "scored.csv"
    shuffled.to_csv(src, index=False)

    assert main(["score", ANOMALY, "--input", str(src), "--output", str(out), "--chunk-rows", "64"]) == 0

    scored = pd.read_csv(out)
    assert scored["transaction_id"].tolist() == shuffled["transaction_id"].tolist()
    assert scored["is_fraud"].tolist() == shuffled["is_fraud"].tolist()  # the true label passes through
    assert {"anomaly_score", "is_anomaly"} <= set(scored.columns)
    mlflow.set_tracking_uri(anomaly.settings.tracking_uri)
    detector = mlflow.sklearn.load_model(f"models:/{ANOMALY}@champion")
    expected = detector.score(compute_offline(txns)[list(detector.columns_)])  # in time order, the training code
    by_id = dict(zip(txns["transaction_id"], expected, strict=True))
    np.testing.assert_allclose(scored["anomaly_score"], [by_id[t] for t in scored["transaction_id"]], rtol=1e-9)
    assert scored["is_anomaly"].tolist() == (scored["anomaly_score"] >= detector.threshold_).tolist()


def test_anomaly_scoring_never_touches_the_online_profiles_and_chunking_changes_nothing(anomaly, tmp_path):
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/13")
    r.flushdb()
    txns = _transactions()
    src = tmp_path / "txns.parquet"
    txns.to_parquet(src, index=False)
    one, many = tmp_path / "one.parquet", tmp_path / "many.csv"

    assert main(["score", ANOMALY, "--input", str(src), "--output", str(one)]) == 0
    assert main(["score", ANOMALY, "--input", str(src), "--output", str(many), "--chunk-rows", "50"]) == 0

    a, b = pd.read_parquet(one), pd.read_csv(many)
    np.testing.assert_allclose(a["anomaly_score"], b["anomaly_score"], rtol=1e-12)
    assert a["is_anomaly"].tolist() == b["is_anomaly"].tolist()
    assert a["transaction_id"].tolist() == txns["transaction_id"].tolist()
    assert r.dbsize() == 0
