"""Source configs and windows (training/sources/): parsing, the checks before any work, the interval a run reads."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ledgerline.errors import LedgerlineError
from training.sources import (
    FilesSource,
    Interval,
    PredictionsSource,
    SourceConfig,
    SqlSource,
    load_source_config,
    snapshot_key,
    source_key,
    window_interval,
)
from training.sources.files import expand
from training.sources.sql import connection_url, masked_url

SQL = {"kind": "sql", "url": "postgresql://reader:s3cret@db.example/bank", "query": "select * from t where at >= :start and at < :end"}


def test_a_full_config_parses_with_keys_and_a_readable_description(tmp_path) -> None:
    cfg = SourceConfig.from_mapping(
        {
            "window": {"kind": "sliding", "weeks": 4},
            "base": "base.parquet",
            "sources": [SQL, {"kind": "sql", "conn_id": "bank_pg", "query": "select 1", "chunksize": 10},
                        {"kind": "files", "path": "daily/{ds}.csv", "missing": "skip"}, {"kind": "predictions"}],
        },
        base_dir=tmp_path,
    )
    assert cfg.window.days == 28 and cfg.window.describe() == "sliding 28 days"
    assert cfg.base == str(tmp_path / "base.parquet")
    sql1, sql2, files, preds = cfg.sources
    assert isinstance(sql1, SqlSource) and isinstance(sql2, SqlSource) and sql2.chunksize == 10
    assert isinstance(files, FilesSource) and files.path == str(tmp_path / "daily/{ds}.csv") and files.missing == "skip"
    assert isinstance(preds, PredictionsSource)
    assert [source_key(s, cfg.sources) for s in cfg.sources] == ["sql_1", "sql_2", "files", "predictions"]
    assert "s3cret" not in cfg.describe() and "***" in cfg.describe()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"sources": [SQL]}, "window is missing"),
        ({"window": {"kind": "rolling", "days": 3}, "sources": [SQL]}, "kind must be one of ['sliding', 'expanding']"),
        ({"window": {"kind": "sliding", "days": 3, "weeks": 1}, "sources": [SQL]}, "one of days or weeks"),
        ({"window": {"kind": "sliding", "days": 0}, "sources": [SQL]}, "days must be a whole number of at least 1"),
        ({"window": {"kind": "expanding"}, "sources": [SQL]}, "needs start: YYYY-MM-DD"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": []}, "sources must be a non-empty list"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{"kind": "kafka"}]}, "source 1: kind must be one of"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{**SQL, "conn_id": "x"}]}, "one of url"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{**SQL, "chunksize": -1}]}, "chunksize must be"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{"kind": "files", "path": "x/{date}.csv"}]},
         "placeholder(s) ['date'] unknown"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{"kind": "files", "path": "x/{ds}"}]},
         "cannot tell the format"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{"kind": "predictions", "where": 1}]}, "unknown key(s) ['where']"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{"kind": "predictions"}, {"kind": "predictions"}]},
         "give {kind: predictions} once"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{**SQL, "name": "a"}, {**SQL, "name": "a"}]}, "used twice"),
        ({"window": {"kind": "sliding", "days": 7}, "sources": [{**SQL, "url": "not a url"}]}, "is not a SQLAlchemy URL"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_fix(data, expected) -> None:
    with pytest.raises(LedgerlineError) as err:
        SourceConfig.from_mapping(data, origin="source config x.yaml")
    message = str(err.value)
    assert expected in message and "\n" not in message and message.startswith("source config x.yaml")


def test_a_yaml_file_that_is_missing_or_broken_is_named(tmp_path) -> None:
    with pytest.raises(LedgerlineError, match="does not exist; check the path passed to --source"):
        load_source_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.sources.yaml"
    bad.write_text("window: {kind: sliding, days: 7\nsources: [")
    with pytest.raises(LedgerlineError, match=f"source config {bad} is not valid YAML"):
        load_source_config(bad)


def test_windows_end_where_the_run_ends_and_reach_back_by_their_policy() -> None:
    end = datetime(2026, 10, 12, tzinfo=UTC)
    sliding = SourceConfig.from_mapping({"window": {"kind": "sliding", "days": 7}, "sources": [SQL]})
    iv = window_interval(sliding, end)
    assert iv == Interval(datetime(2026, 10, 5, tzinfo=UTC), end)
    assert iv.label() == "2026-10-05..2026-10-12" and iv.ds == date(2026, 10, 11) and len(iv.days()) == 7
    expanding = SourceConfig.from_mapping({"window": {"kind": "expanding", "start": "2026-01-01"}, "sources": [SQL]})
    assert window_interval(expanding, end).start == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(LedgerlineError, match="starts 2026-01-01, after the run's end 2025-12-01"):
        window_interval(expanding, datetime(2025, 12, 1, tzinfo=UTC))
    at_three = window_interval(sliding, datetime(2026, 10, 12, 3, tzinfo=UTC))
    assert at_three.label() == "2026-10-05T03:00:00Z..2026-10-12T03:00:00Z"


def test_the_snapshot_key_is_the_logical_date_unless_the_window_ends_inside_it() -> None:
    assert snapshot_key("2026-10-11", datetime(2026, 10, 12, tzinfo=UTC)) == "2026-10-11"
    assert snapshot_key("2026-10-12", datetime(2026, 10, 12, 3, tzinfo=UTC)) == "2026-10-12T0300Z"
    assert snapshot_key("2026-10-12", datetime(2026, 10, 12, 14, 0, 5, tzinfo=UTC)) == "2026-10-12_20261012T140005Z"


def test_a_path_template_expands_to_every_day_of_the_window() -> None:
    iv = Interval(datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 8, tzinfo=UTC))
    assert expand("s3://b/loans/{ds}/part-*.parquet", iv) == [f"s3://b/loans/2026-10-0{d}/part-*.parquet" for d in (5, 6, 7)]
    assert expand("/x/{ds_nodash}.csv", iv) == ["/x/20261005.csv", "/x/20261006.csv", "/x/20261007.csv"]
    assert expand("/x/all.csv", iv) == ["/x/all.csv"]


def test_a_connection_comes_from_the_environment_outside_airflow_and_its_password_is_masked(monkeypatch) -> None:
    src = SqlSource(query="select 1", conn_id="bank_pg")
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_BANK_PG", raising=False)
    with pytest.raises(LedgerlineError, match="set AIRFLOW_CONN_BANK_PG=postgresql://"):
        connection_url(src)
    monkeypatch.setenv("AIRFLOW_CONN_BANK_PG", "postgres://u:pw@h:5432/bank")
    assert connection_url(src) == "postgresql://u:pw@h:5432/bank"
    monkeypatch.setenv("AIRFLOW_CONN_BANK_PG", '{"conn_type": "postgres", "login": "u", "password": "pw", "host": "h", "schema": "bank"}')
    assert connection_url(src) == "postgresql://u:pw@h/bank"
    assert masked_url("postgresql://u:pw@h/bank") == "postgresql://u:***@h/bank"


def test_the_request_builder_takes_a_source_and_finds_one_beside_the_spec(tmp_path) -> None:
    from training.requests import train_request

    cfg = tmp_path / "loans.sources.yaml"
    cfg.write_text("window: {kind: sliding, days: 28}\nsources:\n  - {kind: predictions}\n")
    spec = tmp_path / "loans.yaml"
    spec.write_text("target: default\npositive_label: '1'\n")
    req = train_request("credit-risk", spec_path=spec, logical_date="2026-10-11")
    assert req.sources is not None and req.sources.origin == f"source config {cfg}"
    assert req.interval_end is None and req.data is None
    req = train_request("credit-risk", source={"window": {"kind": "sliding", "days": 7}, "sources": [SQL]},
                        target="default", positive_label="1", interval_end="2026-10-12T03:00:00Z")
    assert req.interval_end == "2026-10-12T03:00:00+00:00"
    with pytest.raises(LedgerlineError, match="pass --data or --source, not both"):
        train_request("credit-risk", data="x.csv", source=str(cfg), target="default", positive_label="1")
    with pytest.raises(LedgerlineError, match="pass --target COLUMN and --positive-label VALUE"):
        train_request("credit-risk", source=str(cfg))
    with pytest.raises(LedgerlineError, match="interval end 'monday' is not an ISO date"):
        train_request("credit-risk", source=str(cfg), target="default", positive_label="1", interval_end="monday")


def test_the_retrain_job_takes_a_source_and_the_runs_data_interval(tmp_path) -> None:
    from apps.orchestration import retrain_job

    cfg = tmp_path / "loans.sources.yaml"
    cfg.write_text("window: {kind: sliding, days: 28}\nsources:\n  - {kind: predictions}\n")
    mapping = {"window": {"kind": "sliding", "days": 7}, "sources": [SQL]}
    base = {"target": "default", "positive_label": "1"}

    def job(params: dict, env: dict | None = None, **kw):  # noqa: ANN202
        return retrain_job("credit-risk", {**base, **params}, when="2026-10-12", dag_run="d/r",
                           lookup=(env or {}).get, **kw)

    scheduled = job({"source": mapping}, interval_start=datetime(2026, 10, 12, 3, tzinfo=UTC),
                    interval_end=datetime(2026, 10, 12, 3, tzinfo=UTC))
    req = scheduled.request()
    assert req.sources is not None and req.sources.window.days == 7 and req.sources.origin == "source param"
    assert scheduled.interval_end == req.interval_end == "2026-10-12T03:00:00+00:00"
    assert scheduled.interval_start == "2026-10-12T03:00:00+00:00"
    # a run without a data interval ends at when it ran; the param interval_end wins over both
    assert job({"source_path": str(cfg)}).interval_end == "2026-10-12T00:00:00+00:00"
    assert job({"source_path": str(cfg), "interval_end": "2026-10-05"},
               interval_end=datetime(2026, 10, 12, 3, tzinfo=UTC)).interval_end == "2026-10-05T00:00:00+00:00"
    from_env = job({}, {"LEDGERLINE_SOURCE__CREDIT_RISK": str(cfg)}).request()
    assert from_env.sources is not None and from_env.sources.origin == f"source config {cfg}"
    assert retrain_job("credit-risk", {}, when="2026-10-12", dag_run="d/r", lookup={}.get).request().sources is None
    with pytest.raises(LedgerlineError, match="give the param source .* or source_path .*, not both"):
        job({"source": mapping, "source_path": str(cfg)})
    with pytest.raises(LedgerlineError, match="window kind must be one of"):
        job({"source": {"window": {"kind": "tumbling"}, "sources": [SQL]}})


def test_the_categorisation_family_adds_no_production_rows_its_retrains_add_every_labelled_line_already() -> None:
    import pandas as pd

    from families.transaction_category.data import category_spec
    from ledgerline.settings import Settings
    from training.family import get_family
    from training.sources.predictions import FEEDBACK, PREDICTION_ID

    spec = category_spec("cats")
    labelled = pd.DataFrame({**{c: ["x"] for c in spec.feature_names}, PREDICTION_ID: ["p1"], FEEDBACK: ["groceries"]})
    iv = Interval(datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 12, tzinfo=UTC))
    rows = get_family("transaction-category").production_rows(Settings(), "cats", spec, labelled, interval=iv)  # type: ignore[call-arg]
    assert rows.empty
    # the generic hook would have made it a training row
    generic = get_family("credit-risk").production_rows(Settings(), "cats", spec, labelled, interval=iv)  # type: ignore[call-arg]
    assert len(generic) == 1 and generic.loc[0, spec.target] == "groceries"
