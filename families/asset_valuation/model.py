"""The object logged for an asset-valuation version: value, interval at any level, reason codes.

:class:`AssetValuationModel` is built by :func:`families.asset_valuation.fit.train` and holds

- the shared feature transformer (:class:`features.transform.TabularFeatures`: numeric columns
  pass through, missing stays NaN; categoricals one-hot, unknown -> all zeros) plus, when the
  data has a time column, two date features: years since the earliest training date and the
  month of the year;
- XGBoost boosters: a pooled one and one per segment that beat it on the validation slice;
- the target transform (``log_target``: the boosters predict log value) and a linear trend
  (``trend_per_year``, in target or log units per year; 0 when validation preferred none). The
  trend is added outside the trees: trees cannot extrapolate, so a date beyond the training
  range gets the trend continued plus the trees' last (detrended) level. A missing date is taken
  as the latest training date;
- split-conformal calibration scores: the signed residuals (log residuals for a log target) of
  the validation slice, the latest part of the training data, predicted by models fitted on the
  earlier part. The interval at level ``a`` adds their ``(1-a)/2`` and ``(1+a)/2`` quantiles
  (finite-sample corrected) to the prediction, so any level can be asked for and intervals widen
  monotonically with it. Segments with enough validation rows have their own scores.

Reason codes are exact TreeSHAP contributions from XGBoost's ``pred_contribs`` (the platform's
``serving.treeshap`` tables support ``binary:logistic`` only, and this module ranks with
``features`` so it may not import ``serving``), summed back onto input columns; the date
features and the trend term go to the time column. For a log target the contributions
``phi_i`` are in log value; they are converted to target units by sharing the difference
between the prediction and the base value ``exp(bias)`` in proportion to them:
``phi_i * (pred - exp(bias)) / sum(phi)``; this is exact in total (the contributions sum to
``pred - base``) and, for small effects, about ``phi_i * pred``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.transform import TabularFeatures
from ledgerline.errors import DataError

logger = logging.getLogger(__name__)

#: ``(route, booster, rows of the booster's matrix) -> (contributions per input column, bias)``, in model space
TreeContributions = Callable[[str, Any, np.ndarray], tuple[np.ndarray, np.ndarray]]

DAYS_PER_YEAR = 365.25
DEFAULT_LEVEL = 0.8
#: the optional input field (and pyfunc param) that asks for another interval level
INTERVAL_FIELD = "interval"


def parse_dates(values: pd.Series, column: str) -> pd.Series:
    """ISO strings / datetimes / dates -> naive UTC timestamps; empty -> NaT; junk -> DataError with examples."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return pd.Series(values, copy=False)
    raw = values.astype(object).where(values.notna(), None)
    text = raw.map(lambda v: None if v is None or (isinstance(v, str) and not v.strip()) else v)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna() & text.notna()
    if bad.any():
        examples = sorted({str(v) for v in text[bad]})[:3]
        raise DataError(
            f"column '{column}' has {int(bad.sum())} value(s) that are not dates (e.g. {examples}); "
            "write dates as ISO 8601 (2024-03-31 or 2024-03-31T12:00:00), leave the cell empty when unknown, "
            "or pass another time column"
        )
    return parsed.dt.tz_localize(None)


def _iso_datetime(value: object, column: str) -> datetime:
    """One time value (ISO 8601 text, datetime or date) as a naive UTC datetime; junk is a DataError."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise DataError(
                f"'{column}' value {text[:40]!r} is not a date; write it as ISO 8601 (2024-03-31 or "
                "2024-03-31T12:00:00), or leave it empty when unknown"
            ) from None
    if when.tzinfo is not None:
        from datetime import UTC

        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


def date_features(dates: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    """(n, 2) float32: years since ``origin`` and month of the year (1-12); NaN when the date is missing."""
    years = (dates - origin).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan) / 86_400 / DAYS_PER_YEAR
    month = dates.dt.month.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.column_stack([years, month]).astype(np.float32)


def conformal_quantiles(scores: np.ndarray, level: float) -> tuple[float, float]:
    """Lower/upper split-conformal quantiles of signed scores for a central interval at ``level``."""
    n = len(scores)
    hi_p = min(1.0, np.ceil((n + 1) * (1 + level) / 2) / n)
    lo_p = max(0.0, np.floor((n + 1) * (1 - level) / 2) / n)
    return float(np.quantile(scores, lo_p, method="lower")), float(np.quantile(scores, hi_p, method="higher"))


def check_level(level: float) -> float:
    if not isinstance(level, int | float) or not 0.0 < float(level) < 1.0:
        raise DataError(f"interval level must be a number strictly between 0 and 1 (e.g. 0.8), not {level!r}")
    return float(level)


class AssetValuationModel:
    """A fitted asset-valuation model (see the module doc). Built by ``fit.train``; picklable."""

    def __init__(
        self,
        *,
        target: str,
        features: TabularFeatures,
        time_column: str | None,
        segment_column: str | None,
        origin: pd.Timestamp | None,
        end: pd.Timestamp | None,
        log_target: bool,
        trend_per_year: float,
        pooled: Any,
        segment_models: Mapping[str, Any],
        scores: np.ndarray,
        segment_scores: Mapping[str, np.ndarray],
        level: float,
        info: Mapping[str, Any],
    ) -> None:
        self.target = target
        self.features = features
        self.time_column = time_column
        self.segment_column = segment_column
        self.origin = origin
        self.end = end
        self.log_target = log_target
        self.trend_per_year = float(trend_per_year)
        self.pooled = pooled
        self.segment_models = dict(segment_models)
        self.scores = np.asarray(scores, dtype=np.float64)  # in time order (the validation slice)
        self.segment_scores = {k: np.asarray(v, dtype=np.float64) for k, v in segment_scores.items()}
        self.level = float(level)
        self.info = dict(info)

    # ------------------------------------------------------------------ inputs
    @property
    def input_columns(self) -> list[str]:
        """The columns a caller sends (the time column last, when there is one)."""
        return [*self.features.input_features_, *([self.time_column] if self.time_column else [])]

    @property
    def feature_names(self) -> list[str]:
        """The booster's input columns: the transformer's, then the date features."""
        names = list(self.features.feature_names_out_)
        if self.time_column:
            names += [f"{self.time_column}:years", f"{self.time_column}:month"]
        return names

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's (n, features) float32 matrix for ``frame`` (missing columns -> DataError)."""
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise DataError(f"columns {missing} are missing; send every input column (empty values are allowed)")
        X = self.features.transform(frame)
        if self.time_column:
            X = np.hstack([X, date_features(parse_dates(frame[self.time_column], self.time_column), self.origin)])
        return X

    def matrix_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`matrix` for JSON-like records (no pandas: the serving fast path); the same numbers.

        A record's time value is an ISO 8601 text (or a datetime/date), None when unknown; junk is a DataError.
        """
        X = self.features.transform_records(records)
        if not self.time_column:
            return X
        column = self.time_column
        assert self.origin is not None
        origin = self.origin.to_pydatetime()
        dates = np.full((len(records), 2), np.nan, dtype=np.float32)
        for i, rec in enumerate(records):
            value = rec.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            when = _iso_datetime(value, column)
            dates[i, 0] = (when - origin).total_seconds() / 86_400 / DAYS_PER_YEAR
            dates[i, 1] = when.month
        return np.hstack([X, dates])

    def segments_of_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Each record's segment as text ('' without a segment column or when empty)."""
        column = self.segment_column
        if not column:
            return np.full(len(records), "", dtype=object)
        return np.array(["" if (v := r.get(column)) is None else str(v) for r in records], dtype=object)

    def routes_of(self, segments: np.ndarray) -> np.ndarray:
        """Which booster serves each segment: its name, or '' for the pooled model."""
        return np.array([s if s in self.segment_models else "" for s in segments], dtype=object)

    def _years(self, X: np.ndarray) -> np.ndarray:
        """Years since the origin (column of the matrix); a missing date is the latest training date."""
        if not self.time_column:
            return np.zeros(len(X))
        years = X[:, -2].astype(np.float64)
        assert self.end is not None and self.origin is not None  # set whenever there is a time column
        last = (self.end - self.origin).total_seconds() / 86_400 / DAYS_PER_YEAR
        return np.where(np.isnan(years), last, years)

    def segments(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's segment as text ('' without a segment column or when empty)."""
        if not self.segment_column or self.segment_column not in frame.columns:
            return np.full(len(frame), "", dtype=object)
        s = frame[self.segment_column]
        return s.astype(object).where(s.notna(), "").map(str).to_numpy(dtype=object)

    def routes(self, frame: pd.DataFrame) -> np.ndarray:
        """Which booster serves each row: its segment's name, or '' for the pooled model."""
        seg = self.segments(frame)
        return np.array([s if s in self.segment_models else "" for s in seg], dtype=object)

    # ---------------------------------------------------------------- predict
    def _margin(self, X: np.ndarray, routes: np.ndarray) -> np.ndarray:
        """Predictions in model space (log value for a log target), trend included."""
        out = np.empty(len(X), dtype=np.float64)
        for name in np.unique(routes):
            rows = routes == name
            booster = self.segment_models[name] if name else self.pooled
            out[rows] = booster.inplace_predict(X[rows])
        return out + self.trend_per_year * self._years(X)

    def _to_target(self, margin: np.ndarray) -> np.ndarray:
        return np.exp(margin) if self.log_target else margin

    def margin_of(self, X: np.ndarray, routes: np.ndarray) -> np.ndarray:
        """Predictions in model space (log value for a log target), trend included, for a matrix."""
        return self._margin(X, routes)

    def interval_of(
        self, margin: np.ndarray, segments: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, lower, upper) in target units from model-space predictions and each row's segment."""
        lo = np.empty(len(margin))
        hi = np.empty(len(margin))
        for name in np.unique(segments) if len(segments) else ():
            rows = segments == name
            lo[rows], hi[rows] = self.quantiles(str(name), level)
        pred = self._to_target(margin)
        lower, upper = self._to_target(margin + lo), self._to_target(margin + hi)
        return pred, np.minimum(lower, pred), np.maximum(upper, pred)

    def quantiles(self, segment: str, level: float) -> tuple[float, float]:
        """The conformal (lower, upper) offsets in model space of a segment at ``level`` (cached per pair)."""
        cache: dict[tuple[str, float], tuple[float, float]] = self.__dict__.setdefault("_quantile_cache", {})
        key = (segment, float(level))
        found = cache.get(key)
        if found is None:
            found = cache[key] = conformal_quantiles(self.segment_scores.get(segment, self.scores), level)
        return found

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Point predictions in target units (for a log target: exp of the predicted log value, a median)."""
        if len(frame) == 0:
            return np.zeros(0)
        return self._to_target(self._margin(self.matrix(frame), self.routes(frame)))

    def predict_interval(
        self, frame: pd.DataFrame, level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, lower, upper) in target units at ``level`` (default: the level fitted with)."""
        level = check_level(self.level if level is None else level)
        if len(frame) == 0:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        margin = self._margin(self.matrix(frame), self.routes(frame))
        return self.interval_of(margin, self.segments(frame), level)

    # ------------------------------------------------------------ reason codes
    def contributions(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Per-row contributions in target units, one column per input column, and each row's base value.

        ``base + contributions.sum(axis=1) == predict(frame)`` (up to float error). See the module doc
        for the conversion of a log model's contributions to target units.
        """
        phi, base = self.contributions_of(self.matrix(frame), self.routes(frame))
        return pd.DataFrame(phi, columns=self.input_columns, index=frame.index), base

    def contributions_of(
        self, X: np.ndarray, routes: np.ndarray, tree_contributions: TreeContributions | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`contributions` for a matrix: (n, input columns) contributions in target units and the base values.

        ``tree_contributions(route, booster, rows)`` gives one booster's (contributions per input column, bias)
        in model space; the default is XGBoost's ``pred_contribs`` (serving passes precomputed TreeSHAP tables).
        """
        contribs = tree_contributions or self.booster_contributions
        names = self.input_columns
        phi = np.zeros((len(X), len(names)))
        bias = np.zeros(len(X))
        for name in np.unique(routes):
            rows = routes == name
            booster = self.segment_models[name] if name else self.pooled
            phi[rows], bias[rows] = contribs(str(name), booster, X[rows])
        if self.time_column and self.trend_per_year:
            years = self._years(X)
            centre = float(self.info.get("mean_years", 0.0))
            phi[:, -1] += self.trend_per_year * (years - centre)
            bias += self.trend_per_year * centre
        if not self.log_target:
            return phi, bias
        base = np.exp(bias)
        pred = np.exp(bias + phi.sum(axis=1))
        total = phi.sum(axis=1)
        safe = np.abs(total) > 1e-9
        scale = np.where(safe, (pred - base) / np.where(safe, total, 1.0), pred)
        return phi * scale[:, None], base

    def input_map(self) -> np.ndarray:
        """(booster columns, input columns): how the booster's columns sum onto the input columns (the date
        features onto the time column)."""
        n_tab = len(self.features.feature_names_out_)
        n_inputs = len(self.features.input_features_)
        out = np.zeros((len(self.feature_names), len(self.input_columns)))
        out[:n_tab, :n_inputs] = self.features.aggregate_contributions(np.eye(n_tab))
        if self.time_column:
            out[n_tab:, -1] = 1.0
        return out

    def booster_contributions(self, route: str, booster: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One booster's exact TreeSHAP contributions per input column (model space, no trend) and its bias."""
        import xgboost as xgb

        c = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
        return c[:, :-1] @ self.input_map(), c[:, -1]

    def reasons(self, frame: pd.DataFrame, top: int = 3) -> list[list[tuple[str, float]]]:
        """Per row, the ``top`` input columns with the largest absolute contribution (target units), largest first."""
        contrib, _ = self.contributions(frame)
        values = contrib.to_numpy()
        order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
        cols = contrib.columns
        return [[(str(cols[j]), float(values[i, j])) for j in order[i]] for i in range(len(values))]

    # --------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """What was chosen and why (for the run's params and the model card)."""
        return {
            "target": self.target,
            "log_target": self.log_target,
            "trend_per_year": self.trend_per_year,
            "time_column": self.time_column,
            "segment_column": self.segment_column,
            "segment_models": sorted(self.segment_models),
            "level": self.level,
            "calibration_rows": len(self.scores),
            **self.info,
        }

    def __repr__(self) -> str:
        return (
            f"AssetValuationModel(target={self.target!r}, log_target={self.log_target}, "
            f"trend_per_year={self.trend_per_year:.4g}, segments={sorted(self.segment_models)})"
        )

