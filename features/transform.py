"""The feature transformer saved inside every tabular model.

Training fits it once; the logged model pipeline carries it, and serving calls the
same object (``transform`` for frames, ``transform_records`` for JSON records), so
features are computed by one code path everywhere. Numeric columns pass through as
float32 (missing stays NaN, which XGBoost handles); categoricals are one-hot encoded
against the categories seen at fit time (unknown or missing -> all zeros).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class TabularFeatures(TransformerMixin, BaseEstimator):
    """Numeric pass-through plus one-hot categoricals, with the sklearn contract."""

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = ()) -> None:
        self.numeric = numeric
        self.categorical = categorical

    # --- fit ---------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any = None) -> TabularFeatures:
        missing = [c for c in [*self.numeric, *self.categorical] if c not in X.columns]
        if missing:
            raise ValueError(f"columns {missing} are missing from the training frame")
        self.categories_: dict[str, list[str]] = {
            c: sorted({str(v) for v in X[c].dropna().unique()}) for c in self.categorical
        }
        names: list[str] = list(self.numeric)
        source: list[int] = list(range(len(self.numeric)))
        for j, c in enumerate(self.categorical):
            names += [f"{c}={v}" for v in self.categories_[c]]
            source += [len(self.numeric) + j] * len(self.categories_[c])
        self.feature_names_out_ = np.asarray(names, dtype=object)
        # index of the input feature each output column comes from (reason codes sum over it)
        self.source_index_ = np.asarray(source, dtype=np.int64)
        self.input_features_ = [*self.numeric, *self.categorical]
        self._offsets_ = self._category_offsets()
        return self

    def _category_offsets(self) -> dict[str, dict[str, int]]:
        offsets: dict[str, dict[str, int]] = {}
        pos = len(self.numeric)
        for c in self.categorical:
            offsets[c] = {v: pos + i for i, v in enumerate(self.categories_[c])}
            pos += len(self.categories_[c])
        return offsets

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_out_

    # --- transform ---------------------------------------------------------
    def transform(self, X: pd.DataFrame) -> np.ndarray:
        n = len(X)
        out = np.zeros((n, len(self.feature_names_out_)), dtype=np.float32)
        for i, c in enumerate(self.numeric):
            out[:, i] = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        rows = np.arange(n)
        start = len(self.numeric)
        for c in self.categorical:
            cats = self.categories_[c]
            values = X[c].astype(object).where(X[c].notna(), None).map(lambda v: None if v is None else str(v))
            codes = pd.Categorical(values, categories=cats).codes.astype(np.int64)  # -1: unknown or missing
            hit = codes >= 0
            out[rows[hit], start + codes[hit]] = 1.0
            start += len(cats)
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Fast path for JSON records (no pandas); same output as ``transform``.

        Column by column: each numeric column is filled as one array, each categorical
        column sets its one-hot cells with one fancy-indexed assignment.
        """
        n = len(records)
        out = np.zeros((n, len(self.feature_names_out_)), dtype=np.float32)
        if n == 0:
            return out
        nan = np.nan
        for i, c in enumerate(self.numeric):
            out[:, i] = [nan if (v := rec.get(c)) is None else float(v) for rec in records]
        for c, table in self._offsets_.items():
            hits = [
                None if v is None else table.get(v if type(v) is str else str(v))
                for v in [rec.get(c) for rec in records]
            ]
            j = np.array(hits, dtype=np.float64)  # None (missing or unknown) -> NaN
            ok = ~np.isnan(j)
            out[np.flatnonzero(ok), j[ok].astype(np.intp)] = 1.0
        return out

    def aggregate_contributions(self, contribs: np.ndarray) -> np.ndarray:
        """Per-output-column contributions summed back onto the input features.

        ``contribs`` is (n, n_out) or (n, n_out + 1) with the bias last (XGBoost's
        ``pred_contribs``); the result is (n, n_inputs), bias dropped.
        """
        contribs = contribs[:, : len(self.feature_names_out_)]
        out = np.zeros((contribs.shape[0], len(self.input_features_)), dtype=np.float64)
        np.add.at(out.T, self.source_index_, contribs.T)
        return out
