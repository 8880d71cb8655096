"""Seeded synthetic asset sales and their default spec.

:func:`generate` draws sales of four asset types (apartment, house, commercial, land) over three
years (``sale_date`` as ISO date strings, 2022-01-01 to 2024-12-31) with a market trend of about
+5 % a year, ten numeric features (some cells empty, as in real exports), two categoricals and a
lognormal-ish ``price``: log price is additive in the features plus the trend plus noise, and the
type changes the price per square metre and how much the features matter.

:func:`default_spec` is its :class:`~features.spec.DatasetSpec`: a numeric target
(``target="price"``, ``target_kind="numeric"``: the label codec is
:class:`~features.labels.NumericCodec`) and the roles ``time`` (the sale date) and ``segment`` (the
asset type). :func:`families.asset_valuation.fit.columns_of` reads them back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.spec import ColumnSpec, DatasetSpec
from ledgerline.errors import DataError

TARGET = "price"
TIME = "sale_date"
SEGMENT = "asset_type"
ID = "asset_id"
START = pd.Timestamp("2022-01-01")
DAYS = 3 * 365
TREND_PER_YEAR = 0.05  # +5 % a year (in log price)

ASSET_TYPES = ("apartment", "house", "commercial", "land")
_TYPE_SHARE = (0.42, 0.33, 0.15, 0.10)
# log price per m2 level, elasticity of price to area, weight of location
_TYPE_PARAMS = {
    "apartment": (np.log(4_000.0), 0.95, 0.10),
    "house": (np.log(3_000.0), 0.85, 0.08),
    "commercial": (np.log(2_500.0), 1.00, 0.12),
    "land": (np.log(300.0), 0.90, 0.15),
}
CITIES = ("north", "south", "east", "west", "centre")
CONDITIONS = ("poor", "fair", "good", "excellent")


def generate(rows: int, seed: int) -> pd.DataFrame:
    """``rows`` sales, deterministic for a seed (same rows and seed -> the same frame)."""
    if rows < 1:
        raise DataError("generate at least one row")
    rng = np.random.default_rng(seed)
    n = int(rows)
    kind = rng.choice(len(ASSET_TYPES), size=n, p=_TYPE_SHARE)
    asset_type = np.asarray(ASSET_TYPES, dtype=object)[kind]
    is_land = asset_type == "land"
    is_flat = asset_type == "apartment"

    area = np.where(
        is_land,
        rng.lognormal(np.log(900), 0.5, n),
        np.where(is_flat, rng.lognormal(np.log(75), 0.35, n), rng.lognormal(np.log(140), 0.4, n)),
    )
    rooms = np.where(is_land, 0, np.clip(np.round(area / 28 + rng.normal(0, 0.8, n)), 1, 12))
    age = np.where(is_land, np.nan, rng.gamma(2.0, 15.0, n))
    location = np.clip(rng.normal(5.5, 1.8, n), 0, 10)
    distance = np.clip(rng.lognormal(np.log(6), 0.7, n) * (1.3 - location / 10), 0.2, 80)
    floor = np.where(is_flat, rng.integers(0, 15, n), 0).astype(float)
    lot = np.where(is_flat, np.nan, area * rng.lognormal(np.log(2.0), 0.4, n))
    parking = (rng.random(n) < np.where(is_flat, 0.4, 0.75)).astype(float)
    renovated = np.where(rng.random(n) < 0.35, rng.integers(0, 20, n), np.nan)
    energy = np.clip(rng.normal(55, 20, n) - np.nan_to_num(age, nan=20.0) * 0.3, 5, 100)
    city = np.asarray(CITIES, dtype=object)[rng.integers(0, len(CITIES), n)]
    condition = np.asarray(CONDITIONS, dtype=object)[rng.choice(4, size=n, p=(0.1, 0.3, 0.45, 0.15))]
    days = rng.integers(0, DAYS, n)
    date = START + pd.to_timedelta(days, unit="D")
    years = days / 365.25

    level = np.array([_TYPE_PARAMS[t][0] for t in asset_type])
    elasticity = np.array([_TYPE_PARAMS[t][1] for t in asset_type])
    loc_w = np.array([_TYPE_PARAMS[t][2] for t in asset_type])
    city_effect = pd.Series(city).map({"north": 0.0, "south": -0.08, "east": -0.04, "west": 0.05, "centre": 0.2})
    cond_effect = pd.Series(condition).map({"poor": -0.2, "fair": -0.07, "good": 0.0, "excellent": 0.12})
    log_price = (
        level
        + elasticity * np.log(area)
        + loc_w * (location - 5)
        - 0.03 * np.sqrt(distance)
        - 0.004 * np.nan_to_num(age, nan=0.0)
        + 0.03 * np.log1p(rooms)
        + 0.05 * parking
        + 0.002 * (energy - 50)
        - 0.004 * np.nan_to_num(renovated, nan=25.0)
        + 0.01 * np.minimum(floor, 8)
        + city_effect.to_numpy()
        + cond_effect.to_numpy()
        + TREND_PER_YEAR * years
        + 0.03 * np.sin(2 * np.pi * (days % 365) / 365)  # a little seasonality
        + rng.normal(0, 0.14, n)
    )
    price = np.round(np.exp(log_price), -2)

    frame = pd.DataFrame(
        {
            ID: [f"S{seed:04d}-{i:07d}" for i in range(n)],
            TIME: date.strftime("%Y-%m-%d"),
            SEGMENT: asset_type,
            "area_m2": np.round(area, 1),
            "rooms": rooms.astype(float),
            "age_years": np.round(age, 1),
            "location_score": np.round(location, 2),
            "distance_center_km": np.round(distance, 2),
            "floor": floor,
            "lot_size_m2": np.round(lot, 0),
            "parking": parking,
            "renovated_years_ago": renovated,
            "energy_score": np.round(energy, 1),
            "city": city,
            "condition": condition,
            TARGET: price,
        }
    )
    # empty cells, as real exports have them (2-6 % of a few columns)
    for column, share in (("age_years", 0.04), ("location_score", 0.03), ("energy_score", 0.06), ("condition", 0.02)):
        blank = rng.random(n) < share
        frame.loc[blank, column] = np.nan if frame[column].dtype != object else None
    return frame.sort_values(TIME, kind="stable").reset_index(drop=True)


def default_spec(model_name: str = "asset-valuation") -> DatasetSpec:
    """The hand-written spec of the generated sales: a numeric target, the time and segment columns by role."""
    return DatasetSpec(
        name=model_name,
        target=TARGET,
        positive_label=None,
        target_kind="numeric",
        id_column=ID,
        min_rows=200,
        columns=(
            ColumnSpec(TIME, "datetime"),
            ColumnSpec(SEGMENT, "categorical", values=ASSET_TYPES),
            ColumnSpec("area_m2", "numeric", min=1, max=1_000_000),
            ColumnSpec("rooms", "numeric", min=0, max=100),
            ColumnSpec("age_years", "numeric", min=0, max=500, max_null_fraction=0.5),
            ColumnSpec("location_score", "numeric", min=0, max=10, max_null_fraction=0.1),
            ColumnSpec("distance_center_km", "numeric", min=0, max=1_000),
            ColumnSpec("floor", "numeric", min=-5, max=200),
            ColumnSpec("lot_size_m2", "numeric", min=0, max=10_000_000, max_null_fraction=0.6),
            ColumnSpec("parking", "numeric", min=0, max=1),
            ColumnSpec("renovated_years_ago", "numeric", min=0, max=500, max_null_fraction=0.9),
            ColumnSpec("energy_score", "numeric", min=0, max=100, max_null_fraction=0.15),
            ColumnSpec("city", "categorical", values=CITIES),
            ColumnSpec("condition", "categorical", values=CONDITIONS, max_null_fraction=0.1),
        ),
        roles={"time": TIME, "segment": SEGMENT},
    )
