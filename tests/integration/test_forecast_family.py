"""The spending-forecast family end to end on a real mlflow server and Postgres: ``ledgerline train`` on a
CSV registers one version holding every series' forecast and lineage; ``ledgerline forecast`` writes it;
bad series data is refused before anything is written; actuals far from the forecasts make the
monitoring run decide to retrain."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from apps.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(trained_forecast, monkeypatch):
    for k, v in trained_forecast.env.items():
        monkeypatch.setenv(k, v)
    return trained_forecast


def test_one_version_holds_the_forecast_table_lineage_and_plots(trained_forecast):
    import mlflow

    from families.spending_forecast.model import load_forecast_model
    from ledgerline.registry import client

    c = client(trained_forecast.settings)
    mv = c.get_model_version(trained_forecast.model_name, trained_forecast.version)
    assert mv.tags["ledgerline.family"] == "spending-forecast"
    run = c.get_run(mv.run_id)
    m = run.data.metrics
    assert m["test_mase_ratio_vs_naive"] < 1.0
    assert 0.7 <= m["test_coverage_80"] <= 0.9 and 0.88 <= m["test_coverage_95"] <= 0.99
    arts = {a.path for a in c.list_artifacts(mv.run_id, "plots")} | {a.path for a in c.list_artifacts(mv.run_id, "evaluation")}
    assert {"plots/backtest_samples.png", "plots/mase_histogram.png", "plots/chosen_models.png",
            "evaluation/lineage_per_series.csv", "evaluation/chosen_models.json"} <= arts
    mlflow.set_tracking_uri(trained_forecast.settings.tracking_uri)
    model = load_forecast_model(f"models:/{trained_forecast.model_name}/{trained_forecast.version}")
    assert len(model.series_ids) == 16 and (model.table.groupby("series_id")["h"].max() == 12).all()
    assert set(model.lineage.columns) >= {"series_id", "chosen", "backtest_mase_snaive", "backtest_mase_theta"}


def test_forecast_writes_series_ds_yhat_and_bounds(cli_env, tmp_path, capsys):
    out = tmp_path / "forecast.csv"
    assert main(["forecast", cli_env.model_name, "--horizon", "6", "--interval", "0.95", "--output", str(out)]) == 0
    got = pd.read_csv(out)
    assert list(got.columns) == ["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
    assert len(got) == 16 * 6 and got.groupby("series_id").size().eq(6).all()
    assert (got["yhat_lower"] <= got["yhat"]).all() and (got["yhat"] <= got["yhat_upper"]).all()
    assert got["ds"].min() == "2026-11-01"  # the month after the data ends
    assert "from it-forecast v" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("two_values", "has only 2 values"),
        ("gap", "has a gap"),
        ("duplicate", "more than one row at"),
        ("horizon0", "--horizon 0 is out of range"),
        ("horizon1000", "--horizon 1000 is out of range"),
        ("forecast_too_far", "beyond it-forecast"),
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(cli_env, tmp_path, capsys, case, message):
    from ledgerline.registry import client

    raw = pd.read_csv(cli_env.data)
    first = raw[raw["series_id"] == raw["series_id"].iloc[0]]
    horizon = "12"
    if case == "two_values":
        raw = pd.concat([raw, pd.DataFrame({"series_id": ["x", "x"], "ds": ["2026-09-01", "2026-10-01"], "y": [1, 2]})])
    elif case == "gap":
        raw = raw.drop(index=first.index[7])
    elif case == "duplicate":
        raw = pd.concat([raw, first.iloc[[2]]])
    elif case.startswith("horizon"):
        horizon = case.removeprefix("horizon")
    src, out = tmp_path / "bad.csv", tmp_path / "out.csv"
    raw.to_csv(src, index=False)
    name = f"bad-{case.replace('_', '-')}"
    if case == "forecast_too_far":
        rc = main(["forecast", cli_env.model_name, "--horizon", "13", "--output", str(out)])
    else:
        rc = main(["train", "spending-forecast", "--data", str(src), "--series-column", "series_id", "--time-column",
                   "ds", "--target", "y", "--freq", "MS", "--horizon", horizon, "--model-name", name])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and message in err[-1], err
    assert not out.exists()
    assert not (cli_env.settings.resolved_data_dir() / "snapshots" / name).exists()
    assert not client(cli_env.settings).search_registered_models(f"name = '{name}'")


def test_actuals_far_from_the_forecasts_degrade_the_model_and_ask_for_a_retrain(trained_forecast):
    import sqlalchemy as sa

    from families.spending_forecast import tables
    from families.spending_forecast.model import load_forecast_model
    from ledgerline import db
    from monitoring.jobs import run_monitoring
    from monitoring.settings import MonitoringSettings

    s = trained_forecast.settings
    url = s.resolved_app_db_url()
    db.upgrade(url)
    model = load_forecast_model(f"models:/{trained_forecast.model_name}/{trained_forecast.version}")
    t = model.table[model.table["h"] <= 3]
    now = datetime(2027, 2, 15, tzinfo=UTC)
    with db.engine_for(url).begin() as conn:
        conn.execute(sa.insert(tables.forecast_actuals), [
            {"model_name": trained_forecast.model_name, "series_id": r.series_id, "ds": r.ds.date(),
             "y": float(r.yhat) * 2.5 + 50, "received_at": now} for r in t.itertuples()
        ])
    try:
        decision = run_monitoring(s, trained_forecast.model_name, now=now, mon=MonitoringSettings(cooldown_days=0))
        assert decision.retrain and decision.reason == "performance"
        perf = decision.evidence["performance"]
        assert perf["status"] == "degraded" and perf["live"]["points"] == 48
        assert perf["live"]["mase"] > perf["backtest"]["mase"] + 0.3
        assert len(perf["degraded_series"]) >= 12
    finally:
        with db.engine_for(url).begin() as conn:
            conn.execute(sa.delete(tables.forecast_actuals).where(tables.forecast_actuals.c.model_name == trained_forecast.model_name))
