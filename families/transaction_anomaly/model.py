"""The transaction-anomaly model: an Isolation Forest on numeric and ordinal-coded columns with a
threshold calibrated to an alert budget. It lives in ``features`` because it travels inside
the logged model (like :class:`features.transform.TabularFeatures`): serving loads it
without importing training code.

The threshold is calibrated on the training scores: with budget b and n rows, the
``ceil(b * n)``-th highest training score; a transaction is an anomaly when its score is
at or above it, so the training alert rate is b (up to ties).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest

from ledgerline.errors import DataError

MAX_ESTIMATORS = 2_000
MEDIUM_RISK_FACTOR = 4  # "medium" risk: the top 4x budget of training scores that are not alerts


class IsolationForestDetector(BaseEstimator):  # type: ignore[misc]
    """Isolation Forest on numeric and ordinal-coded columns, with a threshold at an alert budget.

    Fitted attributes: ``columns_``, ``categories_`` (column -> known values), ``fill_values_``
    (column -> median for missing numbers), ``codes_`` (column -> value -> code), ``iforest_``, ``threshold_``, ``medium_threshold_``,
    ``train_alert_rate_``.
    ``fit`` takes no labels: ``y`` is accepted for the sklearn API and ignored.
    """

    def __init__(self, n_estimators: int = 200, max_samples: int = 256, alert_budget: float = 0.005,
                 random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.alert_budget = alert_budget
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any = None) -> IsolationForestDetector:
        if not 0.0 < self.alert_budget < 0.5:
            raise DataError(f"alert_budget must be between 0 and 0.5 (a share of transactions), not {self.alert_budget}")
        if not 1 <= int(self.n_estimators) <= MAX_ESTIMATORS:
            raise DataError(f"n_estimators must be between 1 and {MAX_ESTIMATORS}, not {self.n_estimators}")
        if len(X) < 2 or X.shape[1] == 0:
            raise DataError(f"training needs at least 2 rows and 1 column, got {X.shape}")
        self.columns_: list[str] = [str(c) for c in X.columns]
        self.categories_: dict[str, list[str]] = {}
        self.fill_values_: dict[str, float] = {}
        for c in X.columns:
            s = X[c]
            if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
                med = pd.to_numeric(s, errors="coerce").astype(float).median()
                self.fill_values_[str(c)] = float(med) if math.isfinite(med) else 0.0
            else:
                self.categories_[str(c)] = sorted(s.dropna().astype(str).unique().tolist())
        self.codes_: dict[str, dict[str, int]] = {c: {v: i for i, v in enumerate(vals)}
                                                  for c, vals in self.categories_.items()}
        A = self.encode(X)
        self.iforest_ = IsolationForest(
            n_estimators=int(self.n_estimators), max_samples=min(int(self.max_samples), len(A)),
            random_state=self.random_state,
        ).fit(A)
        scores = -self.iforest_.score_samples(A)
        k = max(1, math.ceil(self.alert_budget * len(scores)))
        self.threshold_: float = float(np.sort(scores)[-k])
        self.train_alert_rate_: float = float(np.mean(scores >= self.threshold_))
        k_medium = max(k, math.ceil(min(0.5, MEDIUM_RISK_FACTOR * self.alert_budget) * len(scores)))
        self.medium_threshold_: float = float(np.sort(scores)[-k_medium])
        return self

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """The float matrix the forest sees: numbers (missing -> training median), text -> ordinal code (-1 unknown)."""
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise DataError(f"columns {missing} are missing; the model was trained on {self.columns_}")
        out = np.empty((len(X), len(self.columns_)), dtype=np.float64)
        for j, c in enumerate(self.columns_):
            if c in self.codes_:
                codes = self.codes_[c]
                out[:, j] = X[c].map(lambda v, codes=codes: codes.get(str(v), -1) if pd.notna(v) else -1).to_numpy()
            else:
                col = pd.to_numeric(X[c], errors="coerce").astype(float).to_numpy()
                out[:, j] = np.where(np.isfinite(col), col, self.fill_values_[c])
        return out

    def encode_record(self, record: Mapping[str, Any]) -> np.ndarray:
        """One row (a mapping of column -> value) as the forest's input vector; the serving path."""
        x = np.empty(len(self.columns_), dtype=np.float64)
        for j, c in enumerate(self.columns_):
            v = record.get(c)
            codes = self.codes_.get(c)
            if codes is not None:
                x[j] = codes.get(str(v), -1) if v is not None else -1
            else:
                try:
                    f = float(v)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    f = math.nan
                x[j] = f if math.isfinite(f) else self.fill_values_[c]
        return x

    def score(self, X: pd.DataFrame) -> np.ndarray:  # type: ignore[override]
        """Anomaly scores in (0, 1], higher is more anomalous (``-score_samples`` of the forest)."""
        return -self.iforest_.score_samples(self.encode(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 for an alert (score at or above the threshold), else 0."""
        return (self.score(X) >= self.threshold_).astype(int)
