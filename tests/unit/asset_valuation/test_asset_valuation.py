"""The asset-valuation family without services: the seeded generator, validation-chosen log target and
trend, conformal intervals on later sales at any level, segment models kept only where they win, the
pooled fallback, messy input, reason codes in target units, and clear errors for bad input."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from families.asset_valuation import plots
from families.asset_valuation.data import TARGET, TIME, default_spec, generate
from families.asset_valuation.fit import (
    AssetColumns,
    AssetParams,
    columns_of,
    evaluate,
    segment_metrics,
    time_split,
    train,
)
from families.asset_valuation.model import AssetValuationModel
from ledgerline.errors import LedgerlineError

FAST = AssetParams(n_jobs=1, learning_rate=0.2, min_segment_rows=5_000)  # real models, fewer trees; segments: below
ONE_FIT = {"n_jobs": 1, "trend": "none", "min_segment_rows": 10_000}  # one candidate, no segment models


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return generate(2500, seed=11)


@pytest.fixture(scope="module")
def split(sales: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return time_split(sales, TIME, 0.2)


@pytest.fixture(scope="module")
def model(split: tuple[pd.DataFrame, pd.DataFrame]) -> AssetValuationModel:
    return train(split[0], default_spec("asset-test"), FAST)


def test_the_generator_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    a, b, c = generate(400, 3), generate(400, 3), generate(400, 4)
    pd.testing.assert_frame_equal(a, b)
    assert not a[TARGET].equals(c[TARGET])
    assert (a[TARGET] > 0).all() and a[TIME].str.match(r"^\d{4}-\d{2}-\d{2}$").all()
    assert a["age_years"].isna().any(), "some cells are empty, as in real exports"
    assert set(columns_of(default_spec()).numeric) <= set(a.columns)


def test_the_time_split_holds_out_the_latest_sales(sales: pd.DataFrame) -> None:
    train_df, test_df = time_split(sales, TIME, 0.25)
    assert len(test_df) == 625 and len(train_df) == 1875
    assert train_df[TIME].max() <= test_df[TIME].min()
    a, b = time_split(sales, None, 0.25, seed=1)
    assert len(b) == 625 and a[TIME].max() > b[TIME].min(), "without a time column the split is random"


def test_a_log_target_and_the_trend_are_chosen_on_lognormal_prices_that_rise(model: AssetValuationModel) -> None:
    info = model.describe()
    assert model.log_target and info["chosen"] == "log+trend", info["candidates"]
    assert set(info["candidates"]) == {"raw+no-trend", "raw+trend", "log+no-trend", "log+trend"}
    assert 0.02 < model.trend_per_year < 0.09, "the generator's +5 % a year, in log price"


def test_intervals_at_80_percent_cover_70_to_90_percent_of_later_sales(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    metrics = evaluate(model, split[1])
    assert {"mae", "mape", "mdape", "r2", "coverage", "interval_width"} <= set(metrics)
    assert 0.70 <= metrics["coverage"] <= 0.90, metrics
    assert metrics["mdape"] < 0.16 and metrics["r2"] > 0.7, metrics
    assert 0.1 < metrics["interval_width"] < 1.0


def test_any_level_works_and_intervals_widen_with_it(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    test_df = split[1]
    widths, coverages = [], []
    for level in (0.5, 0.8, 0.95):
        pred, lower, upper = model.predict_interval(test_df, level)
        assert (lower <= pred).all() and (pred <= upper).all()
        widths.append(upper - lower)
        coverages.append(evaluate(model, test_df, level=level)["coverage"])
    assert (widths[0] <= widths[1]).all() and (widths[1] <= widths[2]).all()
    assert widths[0].mean() < widths[1].mean() < widths[2].mean()
    assert coverages[0] < coverages[1] < coverages[2] and coverages[2] > 0.88
    np.testing.assert_allclose(model.predict_interval(test_df)[1], model.predict_interval(test_df, 0.8)[1])
    with pytest.raises(LedgerlineError, match="between 0 and 1"):
        model.predict_interval(test_df, 1.5)


def _two_worlds(rows: int, seed: int) -> pd.DataFrame:
    """Segment 'up' gains with x, 'down' loses with it (an additive pooled model cannot do both); 'rare' is small."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(["up", "down", "rare"], size=rows, p=[0.49, 0.49, 0.02])
    x = rng.uniform(0, 3, rows)
    sign = np.where(seg == "down", -1.0, 1.0)
    price = np.exp(11 + sign * x + rng.normal(0, 0.1, rows))
    dates = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, rows), unit="D")
    return pd.DataFrame({"x": x, "noise": rng.normal(size=rows), "kind": seg, "day": dates.strftime("%Y-%m-%d"),
                         "price": price})


def test_a_segment_model_is_kept_only_where_it_beats_the_pooled_model() -> None:
    frame = _two_worlds(2000, 5)
    cols = AssetColumns("price", ("x", "noise"), time="day", segment="kind")
    stumps = AssetParams(n_jobs=1, max_depth=1, trend="none", target_transform="log", learning_rate=0.3)  # additive: the pooled model cannot bend x per segment
    m = train(frame, cols, stumps)
    report = m.describe()["segments"]
    assert set(m.segment_models) == {"up", "down"}
    assert report["rare"]["model"] == "pooled" and report["rare"]["why"] == "too few rows"
    for name, row in report.items():
        if row["model"] == "segment":
            assert row["validation_segment"] < row["validation_pooled"], name
    per_segment = segment_metrics(m, frame)
    assert per_segment.loc["up", "model"] == "segment" and per_segment.loc["rare", "model"] == "pooled"
    assert per_segment.loc["up", "mdape"] < 0.2

    # a segment that does not beat the pooled model is not kept (here: every segment behaves the same)
    same = frame.assign(price=np.exp(11 + frame["x"]))
    assert not train(same, cols, AssetParams(n_jobs=1, trend="none", target_transform="log", max_depth=3)).segment_models


def test_an_unseen_or_empty_segment_falls_back_to_the_pooled_model(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = split[1].head(4).copy()
    rows["asset_type"] = ["castle", None, "castle", "land"]
    assert list(model.routes(rows)[:3]) == ["", "", ""]
    pred, lower, upper = model.predict_interval(rows)
    assert np.isfinite(pred).all() and (pred > 0).all() and (lower < upper).all()


def test_missing_cells_unknown_categories_and_values_beyond_the_training_range_still_predict(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    row = split[1].head(1)
    messy = pd.concat([row] * 5, ignore_index=True)
    messy.loc[1, ["area_m2", "rooms", "age_years", "location_score", "energy_score"]] = np.nan
    messy.loc[2, ["city", "condition"]] = ["atlantis", None]
    messy.loc[3, "area_m2"] = 50 * split[0]["area_m2"].max()
    messy.loc[4, TIME] = "2031-06-30"
    messy.loc[0, TIME] = ""  # an empty date is taken as the latest training date
    pred = model.predict(messy)
    assert np.isfinite(pred).all() and (pred > 0).all()
    if model.trend_per_year > 0:
        later = messy.loc[[0, 0]].reset_index(drop=True)
        later.loc[1, TIME] = "2031-06-30"
        a, b = model.predict(later)
        assert b > a, "the trend continues beyond the training range; the trees alone would stay flat"


def test_rows_with_an_empty_target_are_dropped_and_counted(sales: pd.DataFrame) -> None:
    frame = sales.head(600).copy()
    frame.loc[frame.index[:37], TARGET] = np.nan
    m = train(frame, default_spec(), AssetParams(**ONE_FIT, target_transform="log", n_estimators=60))
    assert m.describe()["dropped_missing_target"] == 37 and m.describe()["rows"] == 563


def test_a_target_that_is_not_strictly_positive_is_never_logged(sales: pd.DataFrame) -> None:
    frame = sales.head(800).copy()
    frame[TARGET] = np.log(frame[TARGET]) - 12.5  # a yield-like target with negative values
    m = train(frame, default_spec(), AssetParams(**ONE_FIT, n_estimators=80))
    assert not m.log_target and m.describe()["selection_metric"] == "mae"
    assert (m.predict(frame.head(50)) < 0).any()
    with pytest.raises(LedgerlineError, match="strictly positive"):
        train(frame, default_spec(), AssetParams(n_jobs=1, target_transform="log"))


def test_reason_codes_are_in_target_units_and_add_up_to_the_prediction(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = split[1].head(20)
    contrib, base = model.contributions(rows)
    np.testing.assert_allclose(base + contrib.sum(axis=1).to_numpy(), model.predict(rows), rtol=1e-3)
    assert "sale_date" in contrib.columns and "area_m2" in contrib.columns
    reasons = model.reasons(rows, top=3)
    assert len(reasons) == 20 and all(len(r) == 3 for r in reasons)
    first = reasons[0]
    assert abs(first[0][1]) >= abs(first[1][1]) >= abs(first[2][1])


def test_the_model_pickles_small_and_predicts_the_same_after_a_round_trip(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    blob = cloudpickle.dumps(model)
    assert len(blob) < 5_000_000
    again = pickle.loads(blob)
    np.testing.assert_allclose(again.predict_interval(split[1])[2], model.predict_interval(split[1])[2])


def test_the_figures_are_matplotlib_figures(model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    figs = plots.figures(model, split[1])
    assert set(figs) == {
        "predicted_vs_actual.png", "coverage_by_segment.png", "coverage_over_time.png", "residuals_over_time.png"
    }
    assert all(isinstance(f, Figure) for f in figs.values())


# --------------------------------------------------------------------------- bad input


def _tiny(rows: int = 120) -> pd.DataFrame:
    return generate(rows, seed=2)


@pytest.mark.parametrize(
    ("change", "columns", "message"),
    [
        (lambda f: f, AssetColumns(TARGET, (), ("city",)), "no numeric feature columns"),
        (lambda f: f.drop(columns=[TARGET]), None, "target column 'price' is not in the data"),
        (lambda f: f.assign(price=np.nan), None, "target column 'price' is empty in every row"),
        (lambda f: f.assign(price="n/a"), None, "not numbers"),
        (lambda f: f, AssetColumns(TARGET, ("area_m2",), time="sold_on"), "time column 'sold_on' is not in the data"),
        (lambda f: f.assign(sale_date=["31/31/2024", "soon", *f[TIME][2:]]), None, "not dates"),
        (lambda f: f.assign(sale_date=None), None, "empty in every row"),
        (lambda f: f.head(20), None, "needs at least 50"),
    ],
    ids=["no-numeric", "no-target", "all-nan-target", "junk-target", "unknown-time", "bad-dates", "no-dates", "tiny"],
)
def test_bad_input_raises_a_ledgerline_error_that_names_the_problem(change, columns, message) -> None:  # noqa: ANN001
    frame = change(_tiny())
    with pytest.raises(LedgerlineError, match=message) as info:
        train(frame, columns or default_spec(), AssetParams(n_jobs=1, n_estimators=20))
    assert len(str(info.value)) > 40, "the message says how to fix it too"


def test_unparseable_dates_at_prediction_time_raise_a_ledgerline_error(
    model: AssetValuationModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = split[1].head(2).assign(sale_date=["2024-13-45", "2024-01-01"])
    with pytest.raises(LedgerlineError, match="'sale_date' has 1 value"):
        model.predict(rows)
    with pytest.raises(LedgerlineError, match="missing"):
        model.predict(split[1].drop(columns=["area_m2"]))
