"""Asset valuation: pure fit and evaluate (no MLflow, no I/O).

:func:`train` turns a frame with a numeric target (price, value, yield) into an
:class:`~families.asset_valuation.model.AssetValuationModel`:

1. rows with an empty target are dropped (and counted); the target must be numeric;
2. the training rows are ordered by the time column (or shuffled with the seed when there is
   none) and the latest ``validation_fraction`` becomes the validation slice;
3. candidates are fitted on the earlier part with early stopping on the validation slice:
   target ``raw`` or ``log`` (log only for a strictly positive target) x trend ``none`` or
   ``linear`` (only with a time column). They are compared by the per-row validation loss
   ``|log(pred/actual)|`` (a smooth relative error, the mean of what MdAPE takes the median of;
   ``|pred - actual|`` when the target is not strictly positive): the lowest mean loss wins, but
   a candidate earlier in :data:`PREFERENCE` (log before raw, trend before none) is kept when the
   winner does not beat it by more than ``CLEAR_WIN_SE`` (2) standard errors of the paired difference, so noise
   does not flip the choice. The linear trend is the slope over time of the out-of-fold
   residuals of a booster fitted without the date features (so the mix of assets sold does not
   pass for a trend); the boosters then learn the detrended target, and the trend is added back
   outside the trees, which cannot extrapolate beyond the latest training date (they still see
   years-since-start and month, for bends and seasons inside the range);
4. with a segment column, each segment with at least ``min_segment_rows`` training rows (and
   ``min_segment_validation_rows`` in the validation slice) gets its own booster (same target
   transform and trend), kept only where it beats the pooled model on that segment's
   validation rows by more than ``CLEAR_WIN_SE`` standard errors; other, empty and unseen segments use the
   pooled model, which also sees the segment as a feature;
5. the validation residuals of the chosen combination (log residuals for a log target) are the
   conformal calibration scores (per segment when it has ``min_calibration_rows``): they measure
   how well a model predicts *later* sales, drift included;
6. everything is refitted on all training rows, with the number of trees found by early
   stopping scaled by ``sqrt(rows / fit rows)`` and the trend re-estimated.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from pydantic.dataclasses import dataclass as params_dataclass

from families.asset_valuation.model import DEFAULT_LEVEL, AssetValuationModel, check_level, date_features, parse_dates
from features.spec import DatasetSpec
from features.transform import TabularFeatures
from ledgerline.errors import DataError

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 50  # an object column with more distinct values is an identifier, not a category
# a candidate (or a segment model) replaces the preferred one only when it wins on validation by more than this
# many standard errors of the paired per-row difference: a one-sided test at about 2.5 %, so noise rarely flips it
CLEAR_WIN_SE = 2.0


@params_dataclass(frozen=True)
class AssetParams:
    """Hyper-parameters and the validation policy, with their allowed ranges (checked when built)."""

    n_estimators: Annotated[int, Field(ge=1, le=20_000)] = 3000  # the cap; early stopping picks the number
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    max_depth: Annotated[int, Field(ge=1, le=16)] = 6
    min_child_weight: Annotated[float, Field(ge=0.0, le=1e6)] = 2.0
    subsample: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    reg_lambda: Annotated[float, Field(ge=0.0, le=1e6)] = 1.0
    max_bin: Annotated[int, Field(ge=2, le=1024)] = 128
    early_stopping_rounds: Annotated[int, Field(ge=1, le=10_000)] = 50
    validation_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2  # the holdout of ``time_split``
    level: Annotated[float, Field(gt=0.0, lt=1.0)] = DEFAULT_LEVEL
    target_transform: Literal["auto", "raw", "log"] = "auto"
    trend: Literal["auto", "none", "linear"] = "auto"
    min_segment_rows: Annotated[int, Field(ge=10, le=10_000_000)] = 200
    min_segment_validation_rows: Annotated[int, Field(ge=5, le=10_000_000)] = 30
    min_calibration_rows: Annotated[int, Field(ge=10, le=10_000_000)] = 100
    min_rows: Annotated[int, Field(ge=10, le=10_000_000)] = 50
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    # 1, not 2: on a busy 2-core machine OpenMP threads spin against other work (10k rows: 5 s with 1 thread,
    # 58 s with 2 while a test suite ran); raise it on a dedicated machine
    n_jobs: Annotated[int, Field(ge=1, le=256)] = 1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class AssetColumns:
    """Which columns play which part. ``segment`` is also used as a categorical feature."""

    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    time: str | None = None
    segment: str | None = None

    @property
    def categorical_features(self) -> tuple[str, ...]:
        if self.segment and self.segment not in self.categorical:
            return (*self.categorical, self.segment)
        return self.categorical


def columns_of(spec: DatasetSpec) -> AssetColumns:
    """The columns of a spec: its numeric target, and the time and segment columns by role.

    The time column is the role ``time`` (``timestamp`` in specs written before), else the spec's only
    datetime column; datetime columns are never numeric features.
    """
    roles = dict(spec.roles)
    target = spec.target or roles.get("target")  # roles: specs written before numeric targets existed
    if not target:
        raise DataError(
            f"spec '{spec.name}' names no target: set target: <price column> and target_kind: numeric "
            "(ledgerline train asset-valuation --target COLUMN)"
        )
    if spec.target is not None and spec.target_kind not in ("numeric", None):
        raise DataError(
            f"spec '{spec.name}': asset valuation predicts a number, but the target '{target}' is {spec.target_kind}; "
            "set target_kind: numeric"
        )
    time = roles.get("time") or roles.get("timestamp")
    if time is None and len(spec.datetime) == 1:
        time = spec.datetime[0]
    segment = roles.get("segment")
    return AssetColumns(
        target=target,
        numeric=tuple(c for c in spec.numeric if c != target),
        categorical=tuple(c for c in spec.categorical if c != segment),
        time=time,
        segment=segment,
    )


def infer_columns(
    frame: pd.DataFrame,
    target: str,
    *,
    time: str | None = None,
    segment: str | None = None,
    drop: tuple[str, ...] = (),
) -> AssetColumns:
    """Columns from dtypes: numbers are numeric, text with at most 50 values categorical, the rest dropped."""
    if target not in frame.columns:
        raise DataError(f"target column '{target}' is not in the data (columns: {list(frame.columns)[:20]})")
    skip = {target, time, segment, *drop}
    numeric, categorical = [], []
    for c in frame.columns:
        if c in skip:
            continue
        s = frame[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            numeric.append(c)
        elif s.nunique(dropna=True) <= MAX_CATEGORIES:
            categorical.append(c)
    return AssetColumns(target, tuple(numeric), tuple(categorical), time, segment)


# --------------------------------------------------------------------------- split


def time_split(
    frame: pd.DataFrame, time_column: str | None, test_fraction: float = 0.2, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the latest ``test_fraction`` of rows by ``time_column``; a seeded random split without one."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    if len(frame) < 2:
        raise DataError(f"{len(frame)} row(s) cannot be split into training and test rows; give at least 2")
    n_test = min(len(frame) - 1, max(1, round(len(frame) * test_fraction)))
    if time_column is None:
        order = np.random.default_rng(seed).permutation(len(frame))
    else:
        if time_column not in frame.columns:
            raise DataError(_unknown_time(time_column, frame))
        dates = parse_dates(frame[time_column], time_column)
        if dates.isna().all():
            raise DataError(f"time column '{time_column}' is empty in every row; fill it or split without a time column")
        order = np.argsort(dates.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")), kind="stable")
    cut = len(frame) - n_test
    return frame.iloc[order[:cut]], frame.iloc[order[cut:]]


def _unknown_time(column: str, frame: pd.DataFrame) -> str:
    return (
        f"time column '{column}' is not in the data (columns: {list(frame.columns)[:20]}); "
        "pass the column that holds the sale date, or none for a random split"
    )


# --------------------------------------------------------------------------- checks


def _checked(frame: pd.DataFrame, cols: AssetColumns, params: AssetParams) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Rows with a target, the target as float, and how many rows were dropped for an empty target."""
    if cols.target not in frame.columns:
        raise DataError(
            f"target column '{cols.target}' is not in the data (columns: {list(frame.columns)[:20]}); "
            "name the column that holds the value to predict"
        )
    if not cols.numeric:
        raise DataError(
            "no numeric feature columns: asset valuation needs at least one numeric input (area, rooms, age, ...); "
            "list them as numeric in the spec or convert text numbers to numbers"
        )
    missing = [c for c in [*cols.numeric, *cols.categorical_features] if c not in frame.columns]
    if missing:
        raise DataError(f"feature columns {missing} are not in the data; add them or remove them from the spec")
    if cols.time is not None and cols.time not in frame.columns:
        raise DataError(_unknown_time(cols.time, frame))
    raw = frame[cols.target]
    y = pd.to_numeric(raw, errors="coerce")
    junk = y.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if junk.any():
        examples = sorted({str(v) for v in raw[junk]})[:3]
        raise DataError(
            f"target column '{cols.target}' has {int(junk.sum())} value(s) that are not numbers (e.g. {examples}); "
            "fix them or leave the cells empty (rows with an empty target are dropped)"
        )
    keep = y.notna().to_numpy() & np.isfinite(y.to_numpy(dtype=np.float64, na_value=np.nan))
    dropped = int((~keep).sum())
    if not keep.any():
        raise DataError(f"target column '{cols.target}' is empty in every row; there is nothing to learn from")
    if keep.sum() < params.min_rows:
        raise DataError(
            f"only {int(keep.sum())} row(s) have a target ({dropped} empty); asset valuation needs at least "
            f"{params.min_rows} to train, validate and calibrate"
        )
    if dropped:
        logger.info("dropped %d row(s) with an empty target '%s'", dropped, cols.target)
    return frame.loc[keep], y.to_numpy(dtype=np.float64)[keep], dropped


# --------------------------------------------------------------------------- fitting pieces


def _xgb_params(params: AssetParams) -> dict[str, Any]:
    return {
        "objective": "reg:squarederror",
        "eta": params.learning_rate,
        "max_depth": params.max_depth,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "lambda": params.reg_lambda,
        "tree_method": "hist",
        "max_bin": params.max_bin,
        "nthread": params.n_jobs,
        "seed": params.seed,
        "verbosity": 0,
    }


def _fit_booster(
    X: np.ndarray,
    y: np.ndarray,
    params: AssetParams,
    *,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    rounds: int | None = None,
) -> tuple[Any, int]:
    """A booster and its number of trees: early stopping on (X_val, y_val), or exactly ``rounds`` trees."""
    import xgboost as xgb

    dtrain = xgb.DMatrix(X, label=y, missing=np.nan)
    if X_val is None or rounds is not None:
        booster = xgb.train(_xgb_params(params), dtrain, num_boost_round=rounds or params.n_estimators)
        return booster, rounds or params.n_estimators
    dval = xgb.DMatrix(X_val, label=y_val, missing=np.nan)
    booster = xgb.train(
        _xgb_params(params),
        dtrain,
        num_boost_round=params.n_estimators,
        evals=[(dval, "validation")],
        early_stopping_rounds=params.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(booster.best_iteration) + 1
    return booster[:best], best


def _trend_slope(X: np.ndarray, z: np.ndarray, years: np.ndarray, params: AssetParams) -> float:
    """Slope per year of the out-of-fold residuals of a booster fitted without the date features.

    Two-fold cross-fitting (seeded random halves): in-sample residuals would be shrunk towards 0 by
    what the booster overfits, and the slope with them. A slope within ``CLEAR_WIN_SE`` standard
    errors of 0 is 0. The date features are the last two columns.
    """
    known = np.flatnonzero(~np.isnan(years))
    if len(known) < 20 or np.ptp(years[known]) < 1 / 12:
        return 0.0
    quick = dataclasses.replace(params, learning_rate=0.2, max_depth=min(params.max_depth, 4))
    half = np.random.default_rng(params.seed).permutation(known)
    folds = (half[: len(half) // 2], half[len(half) // 2 :])
    resid = np.empty(len(z))
    for a, b in (folds, folds[::-1]):
        booster, _ = _fit_booster(X[a, :-2], z[a], quick, rounds=100)
        resid[b] = z[b] - booster.inplace_predict(X[b, :-2])
    t, r = years[known], resid[known]
    slope = float(np.cov(t, r, bias=True)[0, 1] / np.var(t))
    se = float(np.std(r - slope * (t - t.mean())) / (np.std(t) * np.sqrt(len(t))))
    if abs(slope) <= CLEAR_WIN_SE * se:  # no evidence of a trend (small or short data): do not extrapolate noise
        return 0.0
    return slope


def _ape(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    ok = y != 0
    return np.abs(pred[ok] - y[ok]) / np.abs(y[ok])


def _losses(y: np.ndarray, pred: np.ndarray, positive: bool) -> np.ndarray:
    """Per-row validation loss: |log(pred / y)| for a positive target (a smooth relative error), else |pred - y|."""
    if positive:
        return np.abs(np.log(np.maximum(pred, 1e-12 * np.abs(y)) / y))
    return np.abs(pred - y)


def _clearly_better(loss: np.ndarray, than: np.ndarray) -> bool:
    """``loss`` beats ``than`` on the same rows by more than ``CLEAR_WIN_SE`` standard errors of the paired difference."""
    diff = than - loss
    if len(diff) < 2:
        return False
    return bool(diff.mean() > CLEAR_WIN_SE * diff.std(ddof=1) / np.sqrt(len(diff)))


@dataclass(frozen=True)
class _Candidate:
    log: bool
    trend: bool

    @property
    def name(self) -> str:
        return f"{'log' if self.log else 'raw'}+{'trend' if self.trend else 'no-trend'}"


# the order of preference among candidates that validation cannot tell apart (see CLEAR_WIN_SE):
# log before raw (values are multiplicative: errors grow with the value), a trend before none (a model
# must continue a price trend beyond its training dates; without one the fitted slope is near 0 anyway)
PREFERENCE = (_Candidate(True, True), _Candidate(True, False), _Candidate(False, True), _Candidate(False, False))


# --------------------------------------------------------------------------- train


def train(
    frame: pd.DataFrame, columns: DatasetSpec | AssetColumns, params: AssetParams | None = None
) -> AssetValuationModel:
    """Fit the asset-valuation model on ``frame`` (see the module doc for every choice it makes)."""
    params = params or AssetParams()
    check_level(params.level)
    cols = columns_of(columns) if isinstance(columns, DatasetSpec) else columns
    frame, y, dropped = _checked(frame, cols, params)
    positive = bool((y > 0).all())
    if params.target_transform == "log" and not positive:
        raise DataError(
            f"target_transform=log needs a strictly positive target, but '{cols.target}' has "
            f"{int((y <= 0).sum())} value(s) <= 0; use target_transform=auto or raw"
        )

    # order (time or seeded shuffle), date features
    dates = None
    if cols.time is not None:
        dates = parse_dates(frame[cols.time], cols.time)
        if dates.isna().all():
            raise DataError(
                f"time column '{cols.time}' is empty in every row; fill the sale dates or train without a time column"
            )
        order = np.argsort(dates.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")), kind="stable")
    else:
        order = np.random.default_rng(params.seed).permutation(len(frame))
    frame, y = frame.iloc[order], y[order]
    origin = end = None
    if dates is not None:
        dates = dates.iloc[order]
        origin, end = dates.min().normalize(), dates.max()

    features = TabularFeatures(numeric=list(cols.numeric), categorical=list(cols.categorical_features)).fit(frame)
    X = features.transform(frame)
    if dates is not None:
        X = np.hstack([X, date_features(dates, origin)])
    years = X[:, -2].astype(np.float64) if dates is not None else np.zeros(len(X))
    mean_years = float(np.nanmean(years)) if dates is not None else 0.0
    # a missing date counts as the latest training date (as in the model)
    years_filled = np.where(np.isnan(years), np.nanmax(years) if dates is not None else 0.0, years)
    segments = (
        frame[cols.segment].astype(object).where(frame[cols.segment].notna(), "").map(str).to_numpy(dtype=object)
        if cols.segment
        else np.full(len(frame), "", dtype=object)
    )

    n_val = max(1, round(len(frame) * params.validation_fraction))
    fit_rows = np.arange(len(frame)) < len(frame) - n_val
    val_rows = ~fit_rows
    Xf, Xv = X[fit_rows], X[val_rows]
    yv = y[val_rows]

    # 3. candidates
    logs = {"auto": [False, True] if positive else [False], "raw": [False], "log": [True]}[params.target_transform]
    trends = [False] if dates is None else {"auto": [False, True], "none": [False], "linear": [True]}[params.trend]
    results: dict[_Candidate, dict[str, Any]] = {}
    for log in logs:
        z = np.log(y) if log else y
        for trend in trends:
            slope = _trend_slope(Xf, z[fit_rows], years[fit_rows], params) if trend else 0.0
            zf = z[fit_rows] - slope * years_filled[fit_rows]
            zv = z[val_rows] - slope * years_filled[val_rows]
            booster, rounds = _fit_booster(Xf, zf, params, X_val=Xv, y_val=zv)
            margin = booster.inplace_predict(Xv) + slope * years_filled[val_rows]
            pred = np.exp(margin) if log else margin
            loss = _losses(yv, pred, positive)
            results[_Candidate(log, trend)] = {
                "slope": slope, "booster": booster, "rounds": rounds, "margin": margin, "loss": loss,
                "mdape": float(np.median(_ape(yv, pred))) if positive else float("nan"),
            }
            logger.info("candidate log=%s trend=%s: validation loss %.5f (%d trees)", log, trend, loss.mean(), rounds)
    # the best mean loss, or the first preferred candidate it does not clearly beat
    lowest = min(results, key=lambda c: float(results[c]["loss"].mean()))
    chosen = next(c for c in PREFERENCE if c in results and not _clearly_better(results[lowest]["loss"], results[c]["loss"]))
    best = results[chosen]
    z = np.log(y) if chosen.log else y
    slope = best["slope"]
    margin_val = np.asarray(best["margin"], dtype=np.float64).copy()

    # 4. segment models
    seg_val = segments[val_rows]
    seg_fit = segments[fit_rows]
    kept: dict[str, int] = {}
    segment_report: dict[str, dict[str, Any]] = {}
    if cols.segment:
        counts = pd.Series(segments).value_counts()
        for name, count in counts.items():
            if not name:
                continue
            n_v = int((seg_val == name).sum())
            if count < params.min_segment_rows or n_v < params.min_segment_validation_rows:
                segment_report[name] = {"rows": int(count), "model": "pooled", "why": "too few rows"}
                continue
            f_rows, v_rows = seg_fit == name, seg_val == name
            zf = z[fit_rows][f_rows] - slope * years_filled[fit_rows][f_rows]
            zv = z[val_rows][v_rows] - slope * years_filled[val_rows][v_rows]
            booster, rounds = _fit_booster(Xf[f_rows], zf, params, X_val=Xv[v_rows], y_val=zv)
            m = booster.inplace_predict(Xv[v_rows]) + slope * years_filled[val_rows][v_rows]
            own = _losses(yv[v_rows], np.exp(m) if chosen.log else m, positive)
            pooled_m = margin_val[v_rows]
            pooled = _losses(yv[v_rows], np.exp(pooled_m) if chosen.log else pooled_m, positive)
            wins = _clearly_better(own, pooled)
            segment_report[name] = {
                "rows": int(count), "model": "segment" if wins else "pooled",
                "validation_segment": float(own.mean()), "validation_pooled": float(pooled.mean()),
            }
            if wins:
                kept[name] = rounds
                margin_val[v_rows] = m
    logger.info("segment models kept: %s", sorted(kept))

    # 5. calibration scores (signed residuals of the later slice, in model space)
    resid = z[val_rows] - margin_val
    segment_scores = {
        name: resid[seg_val == name]
        for name in np.unique(seg_val)
        if name and (seg_val == name).sum() >= params.min_calibration_rows
    }

    # 6. refit on all training rows
    scale = math.sqrt(len(frame) / max(1, fit_rows.sum()))
    if chosen.trend:
        slope = _trend_slope(X, z, years, params)
    z_detrended = z - slope * years_filled
    pooled_booster, _ = _fit_booster(X, z_detrended, params, rounds=max(1, math.ceil(best["rounds"] * scale)))
    segment_models = {}
    for name, rounds in kept.items():
        rows = segments == name
        segment_models[name], _ = _fit_booster(
            X[rows], z_detrended[rows], params, rounds=max(1, math.ceil(rounds * scale))
        )

    info = {
        "rows": len(frame),
        "dropped_missing_target": dropped,
        "validation_rows": int(val_rows.sum()),
        "trees": int(pooled_booster.num_boosted_rounds()),
        "selection_metric": "mean |log(pred/actual)|" if positive else "mae",
        "candidates": {c.name: {"loss": float(r["loss"].mean()), "mdape": r["mdape"]} for c, r in results.items()},
        "chosen": chosen.name,
        "segments": segment_report,
        "mean_years": mean_years,
    }
    return AssetValuationModel(
        target=cols.target,
        features=features,
        time_column=cols.time,
        segment_column=cols.segment,
        origin=origin,
        end=end,
        log_target=chosen.log,
        trend_per_year=slope,
        pooled=pooled_booster,
        segment_models=segment_models,
        scores=resid,
        segment_scores=segment_scores,
        level=params.level,
        info=info,
    )


# --------------------------------------------------------------------------- evaluate


def _metrics(y: np.ndarray, pred: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict[str, float]:
    ape = _ape(y, pred)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    width = (upper - lower) / np.where(pred != 0, np.abs(pred), np.nan)
    return {
        "mae": float(np.mean(np.abs(pred - y))),
        "mape": float(np.mean(ape)) if len(ape) else float("nan"),
        "mdape": float(np.median(ape)) if len(ape) else float("nan"),
        "r2": float(1 - np.sum((y - pred) ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
        "coverage": float(np.mean((y >= lower) & (y <= upper))),
        "interval_width": float(np.nanmean(width)),
        "interval_width_median": float(np.nanmedian(width)),
        "rows": float(len(y)),
    }


def _labelled(model: AssetValuationModel, frame: pd.DataFrame, target: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    target = target or model.target
    if target not in frame.columns:
        raise DataError(f"target column '{target}' is not in the evaluation data; it is needed to score the model")
    y = pd.to_numeric(frame[target], errors="coerce")
    keep = y.notna().to_numpy()
    if not keep.any():
        raise DataError(f"target column '{target}' is empty in every evaluation row; nothing to score")
    return frame.loc[keep], y.to_numpy(dtype=np.float64)[keep]


def evaluate(
    model: AssetValuationModel, frame: pd.DataFrame, target: str | None = None, level: float | None = None
) -> dict[str, float]:
    """mae, mape, mdape, r2, coverage, interval_width (mean relative width) and its median, rows.

    Rows with an empty target are skipped; MAPE/MdAPE skip rows whose target is 0.
    """
    frame, y = _labelled(model, frame, target)
    pred, lower, upper = model.predict_interval(frame, level)
    return _metrics(y, pred, lower, upper)


def segment_metrics(
    model: AssetValuationModel, frame: pd.DataFrame, target: str | None = None, level: float | None = None
) -> pd.DataFrame:
    """The metrics per segment (index: segment, '' for empty) with the model that served it."""
    if not model.segment_column:
        return pd.DataFrame()
    frame, y = _labelled(model, frame, target)
    pred, lower, upper = model.predict_interval(frame, level)
    seg = model.segments(frame)
    rows = []
    for name in sorted(set(seg)):
        m = seg == name
        rows.append({
            "segment": name,
            "model": "segment" if name in model.segment_models else "pooled",
            **_metrics(y[m], pred[m], lower[m], upper[m]),
        })
    return pd.DataFrame(rows).set_index("segment")
