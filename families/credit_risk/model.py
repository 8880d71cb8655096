"""The credit family's scorecard: a regularised logistic regression on standardised features.

It lives in ``features`` because it travels inside the logged model (like
:class:`features.transform.TabularFeatures`): serving loads it without importing training code.
It takes the matrix :class:`~features.transform.TabularFeatures` produces (numbers as they
are, missing as NaN; categoricals one-hot). A missing number is replaced by the training
median; every column is standardised with the training mean and standard deviation.

Reason codes are exact for a linear model: each column's contribution to the log-odds against
the average applicant is ``coef_j * (z_j - mean_z_j)``, and the log-odds of an applicant are
``base_log_odds_ + sum_j contribution_j`` (``base_log_odds_``: the log-odds of the average
applicant). Fitted attributes are plain NumPy arrays and floats (safe to serialise with skops).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class ScorecardModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """L2-regularised logistic regression on standardised columns (sklearn contract)."""

    def __init__(self, C: float = 1.0, max_iter: int = 500) -> None:
        self.C = C
        self.max_iter = max_iter

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        A = np.asarray(X, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != len(self.center_):
            raise ValueError(f"expected {len(self.center_)} columns, got {A.shape}")
        A = np.where(np.isnan(A), self.fill_, A)
        return (A - self.center_) / self.scale_

    def fit(self, X: np.ndarray, y: Any) -> ScorecardModel:
        from sklearn.linear_model import LogisticRegression

        A = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(int)
        fill = np.nanmedian(np.where(np.isnan(A).all(axis=0), 0.0, A), axis=0) if len(A) else np.zeros(A.shape[1])
        self.fill_ = np.nan_to_num(np.asarray(fill, dtype=np.float64))
        filled = np.where(np.isnan(A), self.fill_, A)
        self.center_ = filled.mean(axis=0)
        scale = filled.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        Z = (filled - self.center_) / self.scale_
        clf = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))
        clf.fit(Z, y)
        self.coef_ = np.asarray(clf.coef_[0], dtype=np.float64)
        self.intercept_ = float(clf.intercept_[0])
        # Z is centred on the training rows, so the average applicant sits at z = 0
        self.base_log_odds_ = self.intercept_
        self.classes_ = np.asarray([0, 1])
        self.n_features_in_ = A.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._standardise(X) @ self.coef_ + self.intercept_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, n_columns) log-odds contributions against the average applicant (they sum to
        ``decision_function(X) - base_log_odds_``)."""
        return np.asarray(self._standardise(X) * self.coef_)
