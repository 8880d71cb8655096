"""Data sources against real services: a Postgres table (sql), daily files on disk and in S3 (files), the
prediction log with feedback (predictions); and ``ledgerline train --source`` end to end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from families.credit_risk.data import credit_spec, generate_loan_applications
from features.sources import frame_digest
from ledgerline import db
from ledgerline.errors import NothingNew, SourceError
from ledgerline.settings import Settings
from training.sources import Interval, SourceConfig, read_window

pytestmark = pytest.mark.integration

END = datetime(2026, 10, 12, tzinfo=UTC)  # the window of --logical-date 2026-10-11, sliding 7 days
WINDOW = Interval(END - timedelta(days=7), END)
LABEL = "2026-10-05..2026-10-12"
COLUMNS = ["application_id", "annual_income", "debt_to_income", "revolving_utilization", "delinquencies_2y",
           "inquiries_6m", "employment_length_years", "loan_amount", "term_months", "purpose", "home_ownership", "default"]
_QUOTED = ", ".join(f'"{c}"' for c in COLUMNS)
QUERY = f"select {_QUOTED} from loans where applied_at >= :start and applied_at < :end"


def _loans(rows: int, seed: int, first: datetime, days: int) -> pd.DataFrame:
    """Generated applications with ``applied_at`` spread over ``days`` days from ``first``."""
    df = generate_loan_applications(rows, seed=seed)
    rng = np.random.default_rng(seed)
    df["application_id"] = [f"S{seed}-{i:06d}" for i in range(rows)]
    df["applied_at"] = [first + timedelta(seconds=float(s)) for s in rng.uniform(0, days * 86400, rows)]
    return df


@pytest.fixture(scope="module")
def bank(make_database) -> tuple[str, pd.DataFrame]:
    """A database ``bank`` with a table ``loans``: 900 applications over 2026-10-01..2026-10-15."""
    url = make_database("bank")
    df = _loans(900, 3, datetime(2026, 10, 1, tzinfo=UTC), 14)
    engine = sa.create_engine(url)
    df.to_sql("loans", engine, index=False)
    df.iloc[::-1].to_sql("loans_reversed", engine, index=False)  # the same rows, inserted the other way round
    engine.dispose()
    return url, df


@pytest.fixture
def settings(tmp_path, app_db_url) -> Settings:
    return Settings(app_db_url=app_db_url, data_dir=tmp_path / "data", home=tmp_path / "home")  # type: ignore[call-arg]


def _config(*sources: dict, days: int = 7, base: str | None = None) -> SourceConfig:
    data: dict = {"window": {"kind": "sliding", "days": days}, "sources": list(sources)}
    if base:
        data["base"] = base
    return SourceConfig.from_mapping(data)


def _read(settings: Settings, cfg: SourceConfig, interval: Interval = WINDOW, **kw):
    return read_window(settings, cfg, model_name=kw.pop("model_name", "loans"), family=kw.pop("family", "credit-risk"),
                       interval=interval, **kw)


def test_a_sql_source_reads_the_window_in_chunks_and_the_same_window_gives_the_same_digest(settings, bank) -> None:
    url, df = bank
    inside = df[(df.applied_at >= WINDOW.start) & (df.applied_at < WINDOW.end)]
    cfg = _config({"kind": "sql", "url": url, "query": QUERY, "chunksize": 50})
    first = _read(settings, cfg)
    assert first.counts == {"sql": len(inside)} and 300 < len(inside) < 600
    assert sorted(first.frame["application_id"]) == sorted(inside["application_id"])
    assert list(first.frame.columns) == COLUMNS and first.frame["default"].dtype == np.int64
    assert first.description.startswith(f"window {LABEL} (sliding 7 days): sql {len(inside)} rows")
    # read again, in other chunks, from a table holding the rows in the reverse order: the same frame
    again = _read(settings, _config({"kind": "sql", "url": url, "query": QUERY.replace("loans", "loans_reversed"),
                                     "chunksize": 1000}))
    assert frame_digest(again.frame) == frame_digest(first.frame)
    pd.testing.assert_frame_equal(again.frame, first.frame)
    # :ds is the window's last day (the logical date): one day of rows
    day = _read(settings, _config({"kind": "sql", "url": url, "query": "select application_id from loans "
                                   "where applied_at::date = cast(:ds as date)"}))
    expected = int((df.applied_at.dt.date == WINDOW.ds).sum())
    assert day.counts == {"sql": expected} and expected > 0


def test_a_failing_sql_source_is_one_line_naming_it_and_the_window_and_no_password(settings, bank, monkeypatch) -> None:
    from tests.conftest import free_port

    url, _ = bank
    good = {"kind": "sql", "url": url, "query": QUERY}
    with pytest.raises(SourceError) as err:
        _read(settings, _config(good, {"kind": "sql", "url": url, "query": "select * from no_such_table"}))
    message = str(err.value)
    assert message.startswith(f"source 2 (sql {url}) for {LABEL}: ") and "no_such_table" in message
    assert "\n" not in message

    refused = f"postgresql://reader:TopSecret42@127.0.0.1:{free_port()}/bank"
    with pytest.raises(SourceError) as err:
        _read(settings, _config(good, {"kind": "sql", "url": refused, "query": QUERY}))
    message = str(err.value)
    assert message.startswith(f"source 2 (sql postgresql://reader:***@127.0.0.1:{refused.split(':')[3].split('/')[0]}/bank) "
                              f"for {LABEL}: ")
    assert "TopSecret42" not in message and ("refused" in message.lower() or "connect" in message.lower())

    # an Airflow Connection from the environment: its id in the message, never its password
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_BANK_PG", refused.replace("postgresql://", "postgres://"))
    with pytest.raises(SourceError) as err:
        _read(settings, _config({"kind": "sql", "conn_id": "bank_pg", "query": QUERY}))
    assert str(err.value).startswith(f"source 1 (sql bank_pg) for {LABEL}: ") and "TopSecret42" not in str(err.value)
    monkeypatch.setenv("AIRFLOW_CONN_BANK_PG", url)
    assert _read(settings, _config({"kind": "sql", "conn_id": "bank_pg", "query": QUERY})).counts["sql"] > 300


def test_an_empty_window_is_nothing_new_not_an_error_and_a_base_file_is_added_to_every_window(
    settings, bank, tmp_path
) -> None:
    url, df = bank
    base = tmp_path / "loans_2025.parquet"
    old = generate_loan_applications(40, seed=99)
    old["application_id"] = [f"OLD-{i}" for i in range(40)]
    old[COLUMNS].to_parquet(base, index=False)
    later = Interval(datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 8, tzinfo=UTC))
    with pytest.raises(NothingNew, match=r"nothing new: no rows in the window 2027-01-01\.\.2027-01-08 \(sliding 7 days\)"):
        _read(settings, _config({"kind": "sql", "url": url, "query": QUERY}, base=str(base)), later)  # the base aside
    read = _read(settings, _config({"kind": "sql", "url": url, "query": QUERY}, base=str(base)))
    assert read.counts == {"base": 40, "sql": len(df[(df.applied_at >= WINDOW.start) & (df.applied_at < WINDOW.end)])}
    assert len(read.frame) == sum(read.counts.values()) and read.frame["application_id"].str.startswith("OLD-").sum() == 40


def _daily_files(folder, df: pd.DataFrame, fmt: str = "parquet", skip: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for day, part in df.groupby(df.applied_at.dt.date):
        if day.isoformat() in skip:
            continue
        rows = part[COLUMNS]
        if fmt == "parquet":
            rows.to_parquet(folder / f"{day.isoformat()}.parquet", index=False)
        else:  # two files a day, matched by a glob
            half = len(rows) // 2
            rows.iloc[:half].to_csv(folder / f"{day.strftime('%Y%m%d')}-a.csv", index=False)
            rows.iloc[half:].to_csv(folder / f"{day.strftime('%Y%m%d')}-b.csv", index=False)


def test_a_files_source_reads_the_days_of_the_window_and_names_a_missing_partition(settings, bank, tmp_path) -> None:
    url, df = bank
    inside = df[(df.applied_at >= WINDOW.start) & (df.applied_at < WINDOW.end)]
    _daily_files(tmp_path / "daily", df, skip=("2026-10-08",))
    template = str(tmp_path / "daily" / "{ds}.parquet")
    with pytest.raises(SourceError) as err:
        _read(settings, _config({"kind": "files", "path": template}))
    assert str(err.value) == (f"source 1 (files {template}) for {LABEL}: {tmp_path}/daily/2026-10-08.parquet does not "
                              "exist (a missing partition); add it, or give the source missing: skip")
    skipped = _read(settings, _config({"kind": "files", "path": template, "missing": "skip"}))
    assert skipped.counts == {"files": int((inside.applied_at.dt.date.astype(str) != "2026-10-08").sum())}

    _daily_files(tmp_path / "csv", df, fmt="csv")
    globbed = _read(settings, _config({"kind": "files", "path": str(tmp_path / "csv" / "{ds_nodash}-*.csv")}))
    assert globbed.counts == {"files": len(inside)}
    # the same rows from the table: the same window content, whichever source held it
    from_sql = _read(settings, _config({"kind": "sql", "url": url, "query": QUERY}))
    assert frame_digest(globbed.frame.astype(from_sql.frame.dtypes.to_dict())) == frame_digest(from_sql.frame)

    # a source whose columns differ from the others' is named
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    df[COLUMNS[:-1]].iloc[:5].assign(applied_at=None).to_csv(narrow / "2026-10-10.csv", index=False)
    with pytest.raises(SourceError, match=rf"^source 2 \(files .*\) for {LABEL}: its columns differ from those of "
                       rf"source 1 \(sql .*\): it lacks \['default'\] and has \['applied_at'\] besides"):
        _read(settings, _config({"kind": "sql", "url": url, "query": QUERY},
                                {"kind": "files", "path": str(narrow / "{ds}.csv"), "missing": "skip"}))


def test_a_files_source_reads_daily_objects_from_s3(settings, bank, s3_server, monkeypatch) -> None:
    _, df = bank
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    prefix = f"sources-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    inside = df[(df.applied_at >= WINDOW.start) & (df.applied_at < WINDOW.end)]
    for day, part in df.groupby(df.applied_at.dt.date):
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{day.isoformat()}/part-0.parquet",
                          Body=part[COLUMNS].to_parquet(index=False))
    s3_settings = settings.model_copy(update={"s3_endpoint_url": s3_server.endpoint_url})
    read = _read(s3_settings, _config({"kind": "files", "path": f"s3://{s3_server.bucket}/{prefix}/{{ds}}/*.parquet"}))
    assert read.counts == {"files": len(inside)}
    missing = f"s3://{s3_server.bucket}/{prefix}-none/{{ds}}.parquet"
    with pytest.raises(SourceError, match=rf"^source 1 \(files {missing}\) for {LABEL}: .*2026-10-05.parquet does not exist"):
        _read(s3_settings, _config({"kind": "files", "path": missing}))


def _log_traffic(url: str, model_name: str, frame: pd.DataFrame, created: list[datetime],
                 labelled_at: list[datetime | None]) -> list[str]:
    """Predictions of ``frame``'s rows (inputs without the label) at ``created``, and feedback (the true
    ``default`` as the canonical label) received at ``labelled_at`` (None: no feedback)."""
    ids = [str(uuid.uuid4()) for _ in range(len(frame))]
    inputs = frame.drop(columns=["default", "applied_at"], errors="ignore").to_dict(orient="records")
    preds = [{"prediction_id": pid, "model_name": model_name, "model_version": "1", "created_at": at,
              "inputs": {k: None if isinstance(v, float) and v != v else (v.item() if hasattr(v, "item") else v)
                         for k, v in rec.items()},
              "outputs": {"probability_of_default": 0.1}, "score": 0.1, "latency_ms": 1.0}
             for pid, at, rec in zip(ids, created, inputs, strict=True)]
    labels = [{"prediction_id": pid, "model_name": model_name, "label": str(int(y)), "received_at": at}
              for pid, y, at in zip(ids, frame["default"], labelled_at, strict=True) if at is not None]
    with db.engine_for(url).begin() as conn:
        conn.execute(sa.insert(db.predictions), preds)
        if labels:
            conn.execute(sa.insert(db.feedback), labels)
    return ids


def test_the_predictions_source_turns_the_windows_labelled_traffic_into_training_rows(tmp_path, fresh_app_db_url, bank) -> None:
    url, _ = bank
    settings = Settings(app_db_url=fresh_app_db_url, data_dir=tmp_path / "data", home=tmp_path / "home")  # type: ignore[call-arg]
    traffic = generate_loan_applications(60, seed=21)
    mid = WINDOW.start + timedelta(days=3)
    day = timedelta(days=1)
    created = [mid] * 40 + [WINDOW.start - day] * 10 + [mid] * 10
    # 30 labelled in the window; 10 labelled only after the window's end; 10 made before it; 10 without a label
    labelled = [mid + day] * 30 + [END + day] * 10 + [mid] * 10 + [None] * 10
    ids = _log_traffic(fresh_app_db_url, "loans", traffic, created, labelled)
    _log_traffic(fresh_app_db_url, "other-model", traffic.iloc[:5], [mid] * 5, [mid] * 5)

    read = _read(settings, _config({"kind": "predictions"}), spec=credit_spec("loans"))
    assert read.counts == {"predictions": 30}
    rows = read.frame
    assert sorted(rows.columns) == sorted(credit_spec().feature_names + ["default", "application_id"])
    expected = traffic.iloc[:30]
    assert sorted(rows["application_id"]) == sorted(expected["application_id"])
    by_id = rows.set_index("application_id")
    assert (by_id.loc[expected["application_id"], "default"].astype(int).to_numpy() == expected["default"].to_numpy()).all()
    assert set(ids[:30]).isdisjoint(rows["application_id"])  # the request's own id, not the prediction's

    # with a table: the production rows take the table's columns and types, in an order of their own
    both = _read(settings, _config({"kind": "sql", "url": url, "query": QUERY}, {"kind": "predictions"}),
                 spec=credit_spec("loans"))
    assert both.counts["predictions"] == 30 and len(both.frame) == both.counts["sql"] + 30
    assert both.frame["default"].dtype == np.int64 and both.frame["term_months"].dtype == np.int64
    assert frame_digest(both.frame) == frame_digest(
        _read(settings, _config({"kind": "predictions"}, {"kind": "sql", "url": url, "query": QUERY}),
              spec=credit_spec("loans")).frame
    )
    with pytest.raises(NothingNew, match=rf"no rows in the window {LABEL} \(sliding 7 days\) from source 1 \(predictions"):
        _read(settings, _config({"kind": "predictions"}), model_name="loans-without-traffic",
              spec=credit_spec("loans-without-traffic"))


def test_train_with_a_source_trains_the_window_then_says_nothing_new_and_names_a_broken_source(
    session_settings, bank, tmp_path, monkeypatch, capsys
) -> None:
    from mlflow import MlflowClient

    from apps.cli import main

    url, df = bank
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", session_settings.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", session_settings.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    name = f"credit-sql-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "loans.sources.yaml"
    source.write_text(f"window: {{kind: sliding, days: 10}}\nsources:\n  - {{kind: sql, url: '{url}', query: '{QUERY}', chunksize: 200}}\n")
    argv = ["train", "credit-risk", "--source", str(source), "--target", "default", "--positive-label", "1",
            "--model-name", name, "--param", "cv_folds=2"]
    assert main([*argv, "--logical-date", "2026-10-11"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    window = (datetime(2026, 10, 2, tzinfo=UTC), END)
    rows = int(((df.applied_at >= window[0]) & (df.applied_at < window[1])).sum())
    assert f"rows per source: sql {rows}" in out and f"model {name} v1: " in out, out
    c = MlflowClient(session_settings.tracking_uri)
    mv = c.get_model_version_by_alias(name, "challenger")
    tags = c.get_run(mv.run_id).data.tags
    assert tags["ledgerline.source.sql.rows"] == str(rows)
    assert tags["ledgerline.window.start"] == "2026-10-02T00:00:00+00:00" and tags["ledgerline.window.end"] == END.isoformat()
    assert tags["ledgerline.logical_date"] == "2026-10-11"

    # a spec with a <stem>.sources.yaml beside it needs no --source; no applications in that window
    spec = tmp_path / "loans.yaml"
    spec.write_text("target: default\npositive_label: '1'\n")
    assert main([*argv[:2], "--spec", str(spec), *argv[10:], "--model-name", name, "--logical-date", "2026-12-01"]) == 0
    out = capsys.readouterr().out
    assert f"using source config {source} (found beside --spec" in out
    assert f"model {name}: nothing new: no rows in the window 2026-11-22..2026-12-02" in out
    broken = tmp_path / "broken.sources.yaml"
    broken.write_text("window: {kind: sliding, days: 10}\nsources:\n  - {kind: sql, url: 'postgresql://u:pw9@127.0.0.1:1/x', query: 'select 1'}\n")
    assert main([*argv[:2], "--source", str(broken), *argv[4:], "--logical-date", "2026-10-12"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: source 1 (sql postgresql://u:***@127.0.0.1:1/x) for 2026-10-03..2026-10-13: ")
    assert "pw9" not in err and "\n" not in err
    assert [v.version for v in c.search_model_versions(f"name='{name}'")] == [mv.version]
    assert sorted(p.name for p in (tmp_path / "data" / "snapshots" / name).iterdir()) == ["2026-10-11"]


def test_the_retrain_dags_ingest_is_skipped_for_an_empty_window_and_keys_a_mid_day_window_by_its_time(
    session_settings, bank, tmp_path
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from apps import orchestration as orch

    url, _ = bank
    settings = session_settings.model_copy(update={"data_dir": tmp_path / "data"})
    params = {"source": {"window": {"kind": "sliding", "days": 10}, "sources": [{"kind": "sql", "url": url, "query": QUERY}]},
              "target": "default", "positive_label": "1", "model_name": f"loans-dag-{uuid.uuid4().hex[:6]}"}

    def job(day: str, end: datetime) -> orch.RetrainJob:
        return orch.retrain_job("credit-risk", params, when=day, dag_run="d/r", lookup={}.get, interval_start=end, interval_end=end)

    with pytest.raises(AirflowSkipException, match=r"nothing new: no rows in the window 2026-12-25T03:00:00Z\.\.2027-01-04T03:00:00Z"):
        with orch.fail_fast():
            orch.ingest(settings, job("2027-01-04", datetime(2027, 1, 4, 3, tzinfo=UTC)))
    assert not (tmp_path / "data" / "snapshots").exists()
    uri = orch.ingest(settings, job("2026-10-12", datetime(2026, 10, 12, 3, tzinfo=UTC)))
    assert f"/{params['model_name']}/2026-10-12T0300Z/" in uri


def test_a_forecast_models_production_rows_are_the_realised_values_of_the_window(tmp_path, fresh_app_db_url) -> None:
    from datetime import date

    from families.spending_forecast import tables
    from families.spending_forecast.data import series_dataset_spec

    settings = Settings(app_db_url=fresh_app_db_url, data_dir=tmp_path / "data", home=tmp_path / "home")  # type: ignore[call-arg]
    inside = WINDOW.start + timedelta(days=1)
    rows = [
        {"model_name": "spend", "series_id": "groceries", "ds": date(2026, 10, 6), "y": 120.5, "received_at": inside},
        {"model_name": "spend", "series_id": "dining", "ds": date(2026, 10, 11), "y": 80.0, "received_at": inside},
        {"model_name": "spend", "series_id": "dining", "ds": date(2026, 10, 1), "y": 1.0, "received_at": inside},  # before
        {"model_name": "spend", "series_id": "rent", "ds": date(2026, 10, 7), "y": 2.0, "received_at": END},  # too late
        {"model_name": "other", "series_id": "rent", "ds": date(2026, 10, 7), "y": 3.0, "received_at": inside},
    ]
    with db.engine_for(fresh_app_db_url).begin() as conn:
        conn.execute(sa.insert(tables.forecast_actuals), rows)
    read = _read(settings, _config({"kind": "predictions"}), model_name="spend", family="spending-forecast",
                 spec=series_dataset_spec("spend"))
    assert read.counts == {"predictions": 2}
    got = read.frame.sort_values("series_id").reset_index(drop=True)
    assert got.to_dict(orient="list") == {"series_id": ["dining", "groceries"],
                                          "ds": [pd.Timestamp("2026-10-11"), pd.Timestamp("2026-10-06")], "y": [80.0, 120.5]}
