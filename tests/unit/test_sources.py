import json

import pandas as pd
import pytest

from families.credit_risk.data import generate_loan_applications
from features.sources import ingest, read_table, snapshot_from_uri
from ledgerline.errors import DataError, SnapshotConflict


def test_ingesting_the_same_date_twice_keeps_one_snapshot(tmp_path):
    df = generate_loan_applications(500, seed=1)
    first = ingest(df, dataset="credit", data_dir=tmp_path, logical_date="2026-03-02")
    second = ingest(df, dataset="credit", data_dir=tmp_path, logical_date="2026-03-02T05:00:00")
    assert first.created and not second.created
    assert first.path == second.path and first.digest == second.digest
    assert [p.name for p in (tmp_path / "snapshots" / "credit").iterdir()] == ["2026-03-02"]
    assert len(pd.read_parquet(second.uri)) == 500
    assert snapshot_from_uri(first.uri).digest == first.digest


def test_a_snapshot_is_immutable(tmp_path):
    ingest(generate_loan_applications(100, seed=1), dataset="credit", data_dir=tmp_path, logical_date="2026-03-02")
    with pytest.raises(SnapshotConflict, match="already exists with different content"):
        ingest(generate_loan_applications(100, seed=2), dataset="credit", data_dir=tmp_path, logical_date="2026-03-02")
    manifest = json.loads((tmp_path / "snapshots/credit/2026-03-02/manifest.json").read_text())
    assert manifest["rows"] == 100
    assert not [p for p in (tmp_path / "snapshots/credit").iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("data.txt", "a,b\n1,2\n", "unsupported file type '.txt'"),
        ("broken.parquet", "not parquet at all", "cannot read .* as parquet"),
        ("empty.csv", "", "cannot read .* as csv"),
        ("header_only.csv", "a,b\n", "has no rows"),
    ],
)
def test_unreadable_inputs_get_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_table(path)
    assert "\n" not in str(err.value)


def test_reads_csv_and_parquet_alike(tmp_path):
    df = generate_loan_applications(50, seed=4)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet", index=False)
    assert read_table(tmp_path / "a.csv").shape == read_table(tmp_path / "a.parquet").shape == df.shape
