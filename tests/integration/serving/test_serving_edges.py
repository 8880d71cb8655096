"""Edges of the serving API on the real app (issue 22 item 15): a batch file without rows and a batch on
a model that does not score rows are refused before anything is stored or queued, and predict takes JSON only.

Airflow is pointed at a closed port: a batch that got past the checks would answer 503 (and leave a
failed job row), so every refusal below is the check's own."""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

NO_AIRFLOW = {"airflow_url": "http://127.0.0.1:9", "airflow_timeout_seconds": 2}


def _batch_rows(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("batches"):
                return 0
            return int(conn.execute(sa.text("SELECT count(*) FROM batches")).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def fixed_batch_id(monkeypatch: pytest.MonkeyPatch) -> str:
    """The id the next batch gets, so a test can look for its objects in the artifact store."""
    import uuid

    from serving import batch_jobs

    batch_id = str(uuid.uuid4())  # its own per test: the artifact store is the session's
    monkeypatch.setattr(batch_jobs, "new_batch_id", lambda: batch_id)
    return batch_id


@pytest.fixture
def credit_server(platform: Any, live_app: Any, sv: Any) -> Any:
    return live_app(sv.serving_settings(), platform.model_copy(update=NO_AIRFLOW))


def test_a_batch_file_without_rows_is_a_422_and_nothing_is_stored_or_queued(
    credit_server: Any, platform: Any, fixed_batch_id: str, sv: Any
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ledgerline.artifact_store import artifact_store
    from serving import batch_jobs

    url = f"/v1/models/{sv.MODEL}/batches"
    header = ",".join(sv.example_record(credit_server)).encode()
    store = artifact_store(platform)
    with credit_server.client() as c:
        for body in (header + b"\n", header, header + b"\r\n", header + b"\n\n  \n"):
            r = c.post(url, content=body, headers={**sv.HEADERS, "Content-Type": "text/csv"})
            assert r.status_code == 422, (body, r.status_code, r.text)
            assert "no rows" in r.json()["detail"] and "header" in r.json()["detail"]
        empty = io.BytesIO()
        pq.write_table(pa.table({k: pa.array([], pa.float64()) for k in sv.example_record(credit_server)}), empty)
        r = c.post(url, content=empty.getvalue(), headers={**sv.HEADERS, "Content-Type": "application/vnd.apache.parquet"})
        assert r.status_code == 422 and "no rows" in r.json()["detail"], r.text
        r = c.post(url, content=b"these bytes are not parquet", headers={**sv.HEADERS, "Content-Type": "application/x-parquet"})
        assert r.status_code == 422 and "not a Parquet file" in r.json()["detail"], r.text
        for fmt in ("csv", "parquet"):
            assert not store.exists(batch_jobs.input_key(fixed_batch_id, fmt))
        assert _batch_rows(platform.resolved_app_db_url()) == 0

        # a file with one row gets past every check (to Airflow, which is away here: 503, the job marked failed)
        row = ",".join(str(v) if v is not None else "" for v in sv.example_record(credit_server).values()).encode()
        r = c.post(url, content=header + b"\n" + row + b"\n", headers={**sv.HEADERS, "Content-Type": "text/csv"})
        assert r.status_code == 503 and "could not be started" in r.json()["detail"], r.text
    assert _batch_rows(platform.resolved_app_db_url()) == 1


def test_predict_takes_json_only_and_names_it(credit_server: Any, sv: Any) -> None:
    import json

    record = sv.example_record(credit_server)
    url = f"/v1/models/{sv.MODEL}/predict"
    body = json.dumps(record).encode()
    with credit_server.client() as c:
        for ctype in ("text/plain", "text/csv", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            r = c.post(url, content=body, headers={**sv.HEADERS, "Content-Type": ctype})
            assert r.status_code == 415, (ctype, r.status_code, r.text)
            assert "application/json" in r.json()["detail"] and ctype.split(";")[0] in r.json()["detail"]
        for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
            r = c.post(url, content=body, headers={**sv.HEADERS, "Content-Type": ctype})
            assert r.status_code == 200, (ctype, r.text)
        r = c.post(url, content=body, headers=sv.HEADERS)  # no Content-Type at all: JSON, as FastAPI reads it
        assert r.status_code == 200, r.text
        # the key is checked first, and an unknown model is still a 404
        assert c.post(url, content=body, headers={"Content-Type": "text/plain"}).status_code == 401
        assert c.post("/v1/models/nope/predict", content=body, headers={**sv.HEADERS, "Content-Type": "text/plain"}).status_code == 404


def test_a_batch_on_a_model_that_does_not_score_rows_is_a_422_saying_what_to_call(
    trained_forecast: Any, fresh_app_db_url: str, tmp_path: Any, live_app: Any, fixed_batch_id: str, sv: Any
) -> None:
    from ledgerline.artifact_store import artifact_store
    from serving import batch_jobs

    platform = trained_forecast.settings.model_copy(update={
        "app_db_url": fresh_app_db_url, "home": tmp_path / "home", **NO_AIRFLOW})
    name = trained_forecast.model_name
    server = live_app(sv.serving_settings(models=[name]), platform)
    store = artifact_store(platform)
    csv = b"series_id,horizon,interval\nc00000/groceries,3,0.8\n"
    with server.client() as c:
        r = c.post(f"/v1/models/{name}/batches", content=csv, headers={**sv.HEADERS, "Content-Type": "text/csv"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert f"/v1/models/{name}/forecast" in detail and f"ledgerline forecast {name}" in detail
        assert "batch" in detail
        r = c.post(f"/v1/models/{name}/batches", json={"input_uri": store.uri("anything.csv")}, headers=sv.HEADERS)
        assert r.status_code == 422 and f"/v1/models/{name}/forecast" in r.json()["detail"], r.text
    assert not store.exists(batch_jobs.input_key(fixed_batch_id, "csv"))
    assert _batch_rows(fresh_app_db_url) == 0

    # a job made without the route (the scheduled daily drop) fails with the same sentence, nothing scored
    from ledgerline import db
    from serving.batch_jobs.runner import run_batch

    key = f"edges/{fixed_batch_id}.csv"
    store.put_bytes(key, csv)
    batch_jobs.create_batch(
        db.engine_for(fresh_app_db_url), batch_id=fixed_batch_id, model_name=name, model_version=trained_forecast.version,
        family="spending-forecast", owner=batch_jobs.SCHEDULE_OWNER, input_uri=store.uri(key), input_format="csv",
        output_format="csv", results_uri=store.uri(batch_jobs.prefix(fixed_batch_id) + "/results"), chunk_rows=100,
        max_error_share=0.0, rows_total=1)
    with pytest.raises(batch_jobs.BatchError, match=f"/v1/models/{name}/forecast"):
        run_batch(platform, fixed_batch_id)
    job = batch_jobs.get_batch(db.engine_for(fresh_app_db_url), fixed_batch_id)
    assert job is not None and job.state == "failed" and job.rows_done == 0 and "ledgerline forecast" in (job.error or "")
