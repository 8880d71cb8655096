"""The spending-forecast family without services: the seeded series generators, the series contract and
its messages, chunked training (plan -> train_chunk -> gather is what train returns), backtested model
choice, calibrated intervals, weekly series on their own weekday, the GX series suite and live error
against actuals."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from families.spending_forecast.data import (
    check_horizon,
    generate_cashflow,
    generate_spending,
    generate_weekly_spending,
    series_dataset_spec,
    series_spec_of,
)
from ledgerline.errors import DataError, SpecError
from training.family import ChunkedTraining, chunked, get_family

CHEAP = {"models": "snaive,theta", "workers": 1}  # Prophet has its own test below


@pytest.fixture(scope="module")
def family():  # noqa: ANN201
    return get_family("spending-forecast")


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return series_dataset_spec("sf-test", freq="MS", horizon=12)


@pytest.fixture(scope="module")
def frame(family, spec) -> pd.DataFrame:
    return family.conform(generate_spending(48, seed=11, months=60), spec)


@pytest.fixture(scope="module")
def model(family, spec, frame):  # noqa: ANN201
    return family.train(frame, spec, family.params(11, CHEAP))


def test_generators_are_seeded_and_have_short_intermittent_and_payday_series():
    a, b = generate_spending(36, seed=3), generate_spending(36, seed=3)
    assert a.equals(b) and not a.equals(generate_spending(36, seed=4))
    lengths = a.groupby("series_id").size()
    assert lengths.max() == 60 and lengths.min() < 36  # some short series
    zero_share = a.groupby("series_id")["y"].apply(lambda y: (y == 0).mean())
    assert (zero_share > 0.3).any()  # intermittent (travel) series
    assert (a["y"] >= 0).all()
    december = a[a["ds"].dt.month == 12].groupby("series_id")["y"].mean()
    assert (december > a.groupby("series_id")["y"].mean()).mean() > 0.6  # holiday peaks
    cash = generate_cashflow(4, seed=3, days=120)
    assert (cash["y"] < 0).any() and (cash["y"] > 0).any()
    big_days = cash.loc[cash["y"] > 0, "ds"].dt.day.unique()
    assert set(big_days) <= {1, 15, 28, 29, 30, 31}  # inflows only on pay days


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("two_values", "has only 2 values"),
        ("gap", "has a gap: 1 missing period(s)"),
        ("duplicate", "more than one row at"),
        ("off_grid", "not on the MS grid"),
        ("negative", "negative values; spending cannot be negative"),
    ],
)
def test_bad_series_are_refused_with_the_problem_and_the_fix(family, spec, change, problem):
    raw = generate_spending(6, seed=2)
    first = raw[raw["series_id"] == raw["series_id"].iloc[0]]
    if change == "two_values":
        raw = pd.concat([raw, pd.DataFrame({"series_id": ["new"] * 2, "ds": pd.to_datetime(["2026-09-01", "2026-10-01"]),
                                            "y": [1.0, 2.0]})])
    elif change == "gap":
        raw = raw.drop(index=first.index[10])
    elif change == "duplicate":
        raw = pd.concat([raw, first.iloc[[3]]])
    elif change == "off_grid":
        raw.loc[first.index[4], "ds"] = pd.Timestamp("2023-05-17")
    else:
        raw.loc[first.index[5], "y"] = -3.0
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")) as err:
        family.conform(raw, spec)
    assert any(w in str(err.value) for w in ("add", "drop", "keep", "aggregate", "fix"))  # and the fix


@pytest.mark.parametrize("horizon", [0, 1000])
def test_a_horizon_out_of_range_names_the_range(horizon):
    with pytest.raises(SpecError, match="use 1 to 36 periods"):
        check_horizon("MS", horizon)


def test_the_family_offers_chunked_training_and_its_parts_gather_into_what_train_returns(family, spec, frame, model):
    assert isinstance(family, ChunkedTraining) and chunked(family) is family
    params = family.params(11, CHEAP)
    chunks = family.plan_chunks(frame, spec, 5)
    assert chunks == family.plan_chunks(frame.sample(frac=1.0, random_state=1), spec, 5)  # deterministic
    ids = [s for c in chunks for s in c]
    assert len(chunks) == 5 and sorted(ids) == sorted(frame["series_id"].unique()) and len(set(ids)) == len(ids)
    import pickle

    parts = [pickle.loads(pickle.dumps(family.train_chunk(family.chunk_rows(frame, spec, c), spec, params))) for c in chunks]
    gathered = family.gather(parts, spec, params)
    pd.testing.assert_frame_equal(gathered.table, model.table)
    pd.testing.assert_frame_equal(gathered.lineage, model.lineage)


def test_each_series_uses_what_its_backtest_favours_and_beats_seasonal_naive_with_calibrated_intervals(
    family, spec, frame, model
):
    lineage = model.lineage
    assert set(lineage["chosen"]) <= {"snaive", "theta"} and lineage["chosen"].nunique() == 2
    for _, row in lineage.iterrows():  # the choice is the lowest backtest MASE of the series
        scores = {m: row[f"backtest_mase_{m}"] for m in ("snaive", "theta")}
        assert row["chosen"] == min(scores, key=scores.get)
    train, test = family.split(frame, spec, 0)
    assert len(train) == len(frame) and len(test) == 12 * frame["series_id"].nunique()
    metrics = family.evaluate(model, test, spec)
    assert metrics["matched_share"] == 1.0
    assert metrics["mase_ratio_vs_naive"] < 1.0
    assert 0.7 <= metrics["coverage_80"] <= 0.92 and 0.85 <= metrics["coverage_95"] <= 0.995
    table = model.table
    assert (table.groupby("series_id")["h"].max() == 12).all()
    assert ((table["lower_95"] <= table["lower_80"]) & (table["lower_80"] <= table["yhat"])
            & (table["yhat"] <= table["upper_80"]) & (table["upper_80"] <= table["upper_95"])).all()
    assert (table["lower_95"] >= 0).all()  # spending: bounds never below zero


def test_the_gate_prefers_lower_errors_and_bands_coverage(family):
    from ledgerline.settings import Settings
    from training.gate import decide

    policy = family.gate_policy(Settings())
    good = {"mase_ratio_vs_naive": 0.9, "coverage_80": 0.8, "coverage_95": 0.95, "mase": 0.8, "wape": 0.2}
    assert decide(good, policy, champion={**good, "mase": 0.78}).passed
    assert not decide({**good, "mase_ratio_vs_naive": 1.02}, policy).passed
    assert not decide({**good, "coverage_80": 0.55}, policy).passed
    worse = decide({**good, "mase": 0.95}, policy, champion=good, champion_version="1")
    assert not worse.passed and "mase 0.9500 worse than tolerance" in worse.reasons[0]


def test_the_model_round_trips_through_its_folder_and_answers_points(model, tmp_path):
    from families.spending_forecast.model import ForecastModel

    loaded = ForecastModel.load(model.save(tmp_path / "m"))
    sid = loaded.series_ids[0]
    pts = loaded.points(sid, 3, 0.95)
    assert len(pts) == 3 and pts[0]["yhat_lower"] <= pts[0]["yhat"] <= pts[0]["yhat_upper"]
    row = model.table[model.table["series_id"] == sid].iloc[0]
    assert pts[0]["yhat"] == pytest.approx(row["yhat"]) and pts[0]["yhat_upper"] == pytest.approx(row["upper_95"])
    out = loaded.frame(2, 0.8)
    assert list(out.columns) == ["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
    assert len(out) == 2 * len(loaded.series_ids)
    with pytest.raises(DataError, match="use one of"):
        loaded.points(sid, 3, 0.9)


def test_prophet_competes_where_two_seasons_of_history_exist(family, spec):
    frame = family.conform(generate_spending(2, seed=5, months=60), spec)
    model = family.train(frame, spec, family.params(5, {"workers": 1}))
    long = model.lineage[model.lineage["length"] >= 48]
    assert long["backtest_mase_prophet"].notna().all()  # fitted and scored in the backtest
    state = model.states.set_index("series_id")
    for sid, chosen in model.lineage.set_index("series_id")["chosen"].items():
        assert state.loc[sid, "model"] == chosen
        if chosen == "prophet":
            assert '"changepoints"' in state.loc[sid, "state"]  # Prophet's own serialised model


def test_daily_cash_flow_may_be_negative_and_keeps_negative_bounds(family):
    spec = series_dataset_spec("cash", freq="D", horizon=30, allow_negative=True)
    frame = family.conform(generate_cashflow(6, seed=1, days=120), spec)
    model = family.train(frame, spec, family.params(1, CHEAP))
    assert (model.table.groupby("series_id")["h"].max() == 30).all()
    assert (model.table["lower_80"] < 0).any()
    assert series_spec_of(spec).season == 7


@pytest.mark.parametrize(("anchor", "weekday"), [("W-MON", 0), ("W-SUN", 6)])
def test_weekly_series_forecast_week_by_week_on_the_weekday_of_the_data(family, anchor, weekday):
    spec = series_dataset_spec("weekly", freq="W", horizon=8)
    frame = family.conform(generate_weekly_spending(24, seed=4, anchor=anchor), spec)
    assert (frame["ds"].dt.weekday == weekday).all() and frame.groupby("series_id").size().min() < 156  # short ones too
    model = family.train(frame, spec, family.params(4, CHEAP))
    assert model.freq == "W" and model.season == 52 and series_spec_of(spec).backtest_horizon == 8
    last = frame.groupby("series_id")["ds"].max().dt.tz_localize(None)
    week = pd.Timedelta(days=7)
    for sid, g in model.table.groupby("series_id"):
        ds = pd.DatetimeIndex(g.sort_values("h")["ds"])
        assert len(ds) == 8 and ds[0] == last[sid] + week  # the week after the series' last week
        assert (ds.weekday == weekday).all() and (ds[1:] - ds[:-1] == week).all()
    hold = model.holdout
    assert (pd.DatetimeIndex(hold["ds"]).weekday == weekday).all()
    sid = model.series_ids[0]  # what serving answers: dates as text, a week apart
    served = [pt["ds"] for pt in model.points(sid, 3, 0.8)]
    assert served == [(last[sid] + k * week).strftime("%Y-%m-%d") for k in (1, 2, 3)]
    _, test = family.split(frame, spec, 0)
    metrics = family.evaluate(model, test, spec)
    assert metrics["matched_share"] == 1.0 and metrics["mase_ratio_vs_naive"] < 1.0
    assert 0.7 <= metrics["coverage_80"] <= 0.9 and 0.85 <= metrics["coverage_95"] <= 0.99


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("gap", "series 'c00000/groceries' has a gap: 2 missing period(s) between 2025-04-28 and 2025-05-19 at frequency W"),
        ("duplicate", "series 'c00000/groceries' has more than one row at 2025-04-14"),
        ("other_weekday", "series 'c00000/dining' has weekly date 2025-04-12 on a Saturday while the other weeks fall on Mondays"),
        ("time_of_day", "has date 2025-04-14T09:30:00+00:00 that is not on the W grid (one date per week at midnight)"),
    ],
)
def test_bad_weekly_series_are_refused_naming_the_series_the_date_and_the_fix(family, change, problem):
    spec = series_dataset_spec("weekly", freq="W", horizon=8)
    mondays = pd.date_range("2025-04-14", periods=80, freq="W-MON")
    raw = pd.concat([pd.DataFrame({"series_id": f"c00000/{cat}", "ds": mondays, "y": 50.0 + np.arange(80) % 7})
                     for cat in ("groceries", "dining", "travel")], ignore_index=True)
    family.conform(raw, spec)  # as built, the data is fine
    first = raw.index[raw["series_id"] == "c00000/groceries"]
    if change == "gap":
        raw = raw.drop(index=first[[3, 4]])
    elif change == "duplicate":
        raw = pd.concat([raw, raw.loc[first[[0]]].assign(y=1.0)])
    elif change == "other_weekday":
        second = raw.index[raw["series_id"] == "c00000/dining"]
        raw.loc[second[0], "ds"] -= pd.Timedelta(days=2)
    else:
        raw.loc[first[0], "ds"] += pd.Timedelta(hours=9, minutes=30)
    with pytest.raises(DataError, match=re.escape(problem)) as err:
        family.conform(raw, spec)
    assert any(w in str(err.value) for w in ("add the missing rows", "keep one value", "same weekday", "aggregate"))


def test_the_gx_suite_checks_order_frequency_length_and_sign(spec, frame):
    """(Data that passes is validated by every training run: tests/integration/test_forecast_family.py.)"""
    from expectations import validate

    bad = frame.drop(index=frame.index[5]).reset_index(drop=True)  # a gap, and a value below zero
    bad.loc[20, "y"] = -1.0
    report = validate(bad, spec, extra=get_family("spending-forecast").expectations())
    failed = {f.column for f in report.failures}
    assert not report.success and {"__step__", "y"} <= failed
    assert len(report.failures) == 2  # the length, uniqueness and other columns pass


def test_live_error_against_actuals_is_per_series_and_overall(model):
    from monitoring.family import get_monitoring_family

    mon = get_monitoring_family("spending-forecast")
    table = model.table[model.table["h"] <= 4]
    exact = table[["series_id", "ds"]].assign(y=table["yhat"])
    overall, per = mon.live_errors(model, exact)
    assert overall["mase"] == pytest.approx(0.0) and overall["wape"] == pytest.approx(0.0)
    assert not per["degraded"].any() and len(per) == len(model.series_ids)
    off = exact.assign(y=exact["y"] * 3 + 100)
    overall, per = mon.live_errors(model, off)
    assert overall["mase"] > 2 and overall["degraded_series_share"] > 0.9
    assert np.isfinite(per["backtest_mase"]).all()
