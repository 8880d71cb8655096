"""Bad training input is refused with one `error:` line and exit 2 before any work (no server needed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from families.credit_risk.data import generate_loan_applications
from features.sources import ingest, read_table
from features.spec import PartialSpec
from ledgerline.errors import DataError, InvalidName, LedgerlineError, SnapshotConflict, SpecError
from ledgerline.names import check_model_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A tracking URI nobody listens on: a check that ran after the server check would say 'cannot reach'."""
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    return tmp_path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from apps.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


def _csv(tmp_path: Path, rows: int = 300) -> str:
    path = tmp_path / "loans.csv"
    generate_loan_applications(rows, seed=3).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("name", ["../../x", "..", "a/b", ".hidden", "-x", "a..b", "x" * 65, "", "a b"])
def test_unsafe_model_names_are_refused(name):
    with pytest.raises(InvalidName, match="is not allowed; use 1-64 letters"):
        check_model_name(name)


@pytest.mark.parametrize("name", ["credit-risk", "my_credit.v2", "A1", "x" * 64])
def test_ordinary_model_names_pass(name):
    assert check_model_name(name) == name


def test_a_path_like_model_name_stops_the_cli_before_anything_is_written(offline_env, capsys):
    rc, err = _run(["train", "credit-risk", "--data", _csv(offline_env), "--target", "default",
                    "--positive-label", "1", "--model-name", "../../x"], capsys)
    assert rc == 2
    assert err == ("error: model name '../../x' is not allowed; use 1-64 letters, digits, '.', '_' or '-', "
                   "starting with a letter or digit and without '..' (e.g. --model-name my-credit)")
    assert not (offline_env / "data").exists() and not (offline_env.parent / "x").exists()


def test_a_path_like_model_name_in_the_retrain_run_conf_is_refused():
    from apps.orchestration import retrain_job

    with pytest.raises(InvalidName, match=r"model name '\.\./\.\./x' is not allowed"):
        retrain_job("credit-risk", {"model_name": "../../x"}, when="2026-03-02", dag_run="d/r", lookup=lambda _: None)


def test_a_snapshot_is_never_written_outside_the_data_folder(tmp_path):
    with pytest.raises(InvalidName):
        ingest(generate_loan_applications(10, seed=1), dataset="../escape", data_dir=tmp_path / "data")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("columns:\n  annual_income: {type: numeric, min: abc}\n",
         "'columns.annual_income.min' must be a number, got 'abc'"),
        ("positive_rate: 5\n", "'positive_rate' must be [low, high] with 0 <= low <= high <= 1, got 5"),
        ("drop: 7\n", "'drop' must be a list of column names, got 7"),
        ("min_rows: lots\n", "'min_rows' must be a whole number of rows >= 1, got 'lots'"),
        ("columns:\n  term_months: {type: integer}\n",
         "'columns.term_months.type' must be 'numeric', 'categorical' or 'datetime', got 'integer'"),
    ],
)
def test_spec_values_of_the_wrong_type_are_named_before_the_server_is_asked(offline_env, capsys, yaml_text, message):
    spec = offline_env / "spec.yaml"
    spec.write_text("target: default\npositive_label: 1\n" + yaml_text)
    rc, err = _run(["train", "credit-risk", "--data", _csv(offline_env), "--spec", str(spec),
                    "--model-name", "credit-spec-types"], capsys)
    assert rc == 2
    assert err == f"error: {spec}: {message}"
    assert not (offline_env / "data").exists()


def test_an_unknown_column_type_is_not_silently_categorical():
    with pytest.raises(SpecError, match="'columns.x.type' must be 'numeric', 'categorical' or 'datetime', got 'integer'"):
        PartialSpec.from_dict({"columns": {"x": {"type": "integer"}}})


def test_an_out_of_range_hyper_parameter_stops_the_cli_before_training(offline_env, capsys):
    rc, err = _run(["train", "credit-risk", "--rows", "500", "--param", "max_depth=-3"], capsys)
    assert rc == 2
    assert err == ("error: parameter max_depth='-3' is invalid: input should be greater than or equal to 1 "
                   "(--param KEY=VALUE)")


def test_a_missing_file_is_reported_at_once(offline_env):
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "apps.cli", "train", "credit-risk", "--data", str(offline_env / "missing.csv"),
         "--target", "default", "--positive-label", "1"],
        capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: data file {offline_env / 'missing.csv'} does not exist; check the path passed to --data"
    assert elapsed < 5.0, f"took {elapsed:.1f}s: the path must be checked before heavy imports"


def test_duplicate_csv_headers_are_refused_instead_of_renamed(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("income,income,default\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError, match=r"duplicate column names \['income'\]; rename or remove"):
        read_table(path)


def test_nested_parquet_columns_are_refused(tmp_path):
    path = tmp_path / "nested.parquet"
    table = pa.table({"income": [1.0, 2.0], "tags": [[1, 2], [3]], "addr": [{"zip": "1"}, {"zip": "2"}],
                      "default": [0, 1]})
    pq.write_table(table, path)
    with pytest.raises(DataError, match=r"has nested columns \['tags', 'addr'\] \(lists, structs or maps\); flatten"):
        read_table(path)


def test_a_rejected_snapshot_gives_way_to_corrected_data_and_is_kept_aside(tmp_path):
    from features.sources import is_rejected, mark_rejected

    bad, fixed = generate_loan_applications(100, seed=1), generate_loan_applications(100, seed=2)
    first = ingest(bad, dataset="credit", data_dir=tmp_path, logical_date="2026-03-02")
    mark_rejected(first, "annual_income below its minimum")
    again = ingest(fixed, dataset="credit", data_dir=tmp_path, logical_date="2026-03-02")
    assert again.created and again.digest != first.digest and not is_rejected(again)
    assert json.loads((again.path / "manifest.json").read_text())["digest"] == again.digest
    (aside,) = (tmp_path / "snapshots" / "credit" / ".rejected").iterdir()
    assert aside.name == f"2026-03-02-{first.digest[:12]}" and (aside / "rejected.json").exists()
    # the accepted one is immutable again
    with pytest.raises(SnapshotConflict):
        ingest(bad, dataset="credit", data_dir=tmp_path, logical_date="2026-03-02")


def test_the_demo_names_a_taken_port_before_training(tmp_path):
    from apps.demo import check_ports
    from ledgerline.settings import Settings

    settings = Settings(tracking_uri=f"http://127.0.0.1:{_free_port()}", home=tmp_path)  # type: ignore[call-arg]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(LedgerlineError) as err:
            check_ports(settings, serving_port=taken, airflow_port=_free_port())
    message = str(err.value)
    assert f"port {taken} (serving API) is taken by something that is not the Ledgerline serving API" in message
    assert "make down" in message
    check_ports(settings, serving_port=_free_port(), airflow_port=_free_port())  # free ports: no complaint


def test_too_few_rows_or_positives_are_refused_before_the_snapshot():
    from families.credit_risk.data import credit_spec
    from features.spec import conform
    from training.pipeline import check_rows

    spec = credit_spec()
    with pytest.raises(DataError, match=r"the data has 30 rows; training needs at least 200"):
        check_rows(conform(generate_loan_applications(30, seed=1), spec), spec)
    few_positives = generate_loan_applications(2000, seed=1)
    few_positives["default"] = 0
    few_positives.loc[:19, "default"] = 1
    with pytest.raises(DataError, match=r"only 20 rows have a default '1'; the test split needs at least 10 of each"):
        check_rows(conform(few_positives, spec), spec)
    check_rows(conform(generate_loan_applications(2000, seed=1), spec), spec)


def test_frozen_spec_columns_must_match(tmp_path):
    from families.credit_risk.data import credit_spec
    from training.pipeline import check_columns

    german = pd.DataFrame({"duration": [6, 12], "credit_amount": [1000, 2000], "class": ["good", "bad"]})
    with pytest.raises(SpecError) as err:
        check_columns(german, credit_spec(), "credit-risk", "credit-risk v1")
    message = str(err.value)
    assert "model 'credit-risk' takes the columns of its frozen spec (credit-risk v1)" in message
    assert "lacks ['annual_income'" in message and "has columns ['duration', 'credit_amount', 'class']" in message
    assert "pass --model-name" in message
    check_columns(generate_loan_applications(5, seed=1), credit_spec(), "credit-risk", "v1")


def test_the_retrain_dag_takes_hyper_parameters_as_the_cli_does():
    """``hyper_params`` (an object, or its JSON text from a run conf) reaches the request like ``--param``;
    an unknown name or a bad value is refused when the request is built, naming it."""
    from apps.orchestration import retrain_job
    from ledgerline.errors import LedgerlineError
    from training.inputs import check_params

    job = retrain_job("credit-risk", {"hyper_params": '{"max_depth": 3}'}, when="2026-03-02", dag_run="d/r",
                      lookup=lambda _: None)
    assert job.request().params == {"max_depth": 3}
    with pytest.raises(LedgerlineError, match="hyper_params must be"):
        retrain_job("credit-risk", {"hyper_params": "[1, 2]"}, when="2026-03-02", dag_run="d/r", lookup=lambda _: None)
    bad = retrain_job("credit-risk", {"hyper_params": {"no_such_knob": 1}}, when="2026-03-02", dag_run="d/r",
                      lookup=lambda _: None)
    with pytest.raises(LedgerlineError, match="no_such_knob"):
        check_params("credit-risk", 42, bad.request().params)
