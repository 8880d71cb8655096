"""Batch jobs' pure parts: prediction ids derived from the job and the row, artifact-store keys that cannot escape."""

from __future__ import annotations

from pathlib import Path

from ledgerline.artifact_store import ArtifactStore
from serving.batch_jobs import batch_prediction_ids, dated_batch_id, format_of, owner_of
from serving.state import prediction_id_ms


def test_batch_prediction_ids_are_the_same_every_time_distinct_per_row_and_job_and_uuidv7() -> None:
    ms = 1_767_225_600_000
    ids = batch_prediction_ids("job-a", ms, range(1, 1001))
    assert ids == batch_prediction_ids("job-a", ms, range(1, 1001))  # a re-scored chunk logs the same rows
    assert ids[10:20] == batch_prediction_ids("job-a", ms, range(11, 21))  # a chunk computes its own rows alone
    assert len(set(ids)) == 1000 and not set(ids) & set(batch_prediction_ids("job-b", ms, range(1, 1001)))
    assert {prediction_id_ms(i) for i in ids} == {ms}  # feedback's pending window reads their time


def test_keys_inside_the_store_only(tmp_path: Path) -> None:
    local = ArtifactStore(str(tmp_path / "art"))
    assert local.key_of(str(tmp_path / "art" / "drops" / "a.csv")) == "drops/a.csv"
    assert local.key_of(str(tmp_path / "art" / ".." / "secret.csv")) is None
    assert local.key_of("/etc/passwd") is None
    s3 = ArtifactStore("s3://bucket/prefix")
    assert s3.key_of("s3://bucket/prefix/batches/x/input.csv") == "batches/x/input.csv"
    assert s3.key_of("s3://bucket/other/x.csv") is None and s3.key_of("s3://bucket/prefix/../x.csv") is None
    assert s3.uri("batches/x") == "s3://bucket/prefix/batches/x"


def test_names_formats_owners_and_dated_ids() -> None:
    assert (format_of("a.CSV"), format_of("b.parquet"), format_of("c.json")) == ("csv", "parquet", None)
    assert owner_of("key-1") == owner_of(b"key-1") != owner_of("key-2") and "key-1" not in owner_of("key-1")
    assert dated_batch_id("m", "s3://b/d/2026-03-02/x.csv") == dated_batch_id("m", "s3://b/d/2026-03-02/x.csv")
    assert dated_batch_id("m", "s3://b/d/2026-03-02/x.csv") != dated_batch_id("m", "s3://b/d/2026-03-03/x.csv")


def test_local_store_round_trip_is_atomic(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    assert store.put_stream("a/b.csv", [b"x,y\n", b"1,2\n"]) == 8
    assert b"".join(store.stream("a/b.csv")) == b"x,y\n1,2\n" and store.exists("a/b.csv")
    w = store.open_writer("a/c.csv")
    w.write(b"half")
    w.abort()
    assert not store.exists("a/c.csv") and list((tmp_path / "a").iterdir()) == [tmp_path / "a" / "b.csv"]
