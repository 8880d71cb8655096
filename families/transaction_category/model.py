"""The transaction-categorisation model as it travels inside the logged MLflow model.

A linear multiclass model over one sparse feature vector per statement line:

* the normalised description's n-grams (:func:`families.transaction_category.data.ngrams`), TF-IDF weighted
  (sublinear term frequency, smoothed IDF, L2-normalised), vocabulary and IDF fitted at training;
* the amount (and any other numeric column) one-hot in quantile bins of the training data;
* currency, country (and any other categorical column) one-hot.

Class scores are ``X @ coef_.T + intercept_``; probabilities are ``softmax(scores / temperature_)``,
the temperature fitted on a merchant-grouped validation split (calibration). Everything is plain
arrays and dicts, so the model needs no training library to answer, and one record is answered in
microseconds; :meth:`explain` names the n-grams (and fields) that pushed the chosen class most.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from families.transaction_category.data import text_features

AMOUNT_BINS = 12


def fit_vocabulary(docs: Iterable[list[str]], *, min_df: int, max_features: int) -> tuple[dict[str, int], np.ndarray, int]:
    """N-gram -> column, and the smoothed IDF of each (``log((1 + n) / (1 + df)) + 1``), from tokenised docs."""
    df: Counter[str] = Counter()
    n = 0
    for toks in docs:
        df.update(set(toks))
        n += 1
    kept = [(t, c) for t, c in df.items() if c >= min_df]
    kept.sort(key=lambda tc: (-tc[1], tc[0]))
    kept = kept[:max_features]
    kept.sort(key=lambda tc: tc[0])
    vocab = {t: i for i, (t, _) in enumerate(kept)}
    idf = np.asarray([math.log((1 + n) / (1 + c)) + 1.0 for _, c in kept], dtype=np.float64)
    return vocab, idf, n


class CategoryModel(BaseEstimator):  # type: ignore[misc]
    """Fitted attributes (set by :func:`families.transaction_category.fit.train`, not by ``fit``): ``classes_``,
    ``text_column_``, ``vocabulary_``, ``idf_``, ``numeric_`` (column -> bin edges), ``categorical_``
    (column -> known values), ``coef_``, ``intercept_``, ``temperature_``, ``candidate_``."""

    def __init__(self, dense_weight: float = 1.0) -> None:
        self.dense_weight = dense_weight

    # ------------------------------------------------------------------ layout
    @property
    def n_text_(self) -> int:
        return len(self.vocabulary_)

    def _dense_layout(self) -> list[tuple[str, str, object]]:
        """(column, kind, detail) of each dense slot after the text block, in order."""
        out: list[tuple[str, str, object]] = []
        for col, edges in self.numeric_.items():
            for b in range(len(edges) + 1):
                out.append((col, "bin", b))
            out.append((col, "missing", None))
        for col, values in self.categorical_.items():
            for v in values:
                out.append((col, "value", v))
            out.append((col, "other", None))
        return out

    def setup(self, text_column: str, vocabulary: dict[str, int], idf: np.ndarray, numeric: Mapping[str, np.ndarray],
              categorical: Mapping[str, Sequence[str]], classes: Sequence[str]) -> CategoryModel:
        self.text_column_ = text_column
        self.vocabulary_ = vocabulary
        self.idf_ = np.asarray(idf, dtype=np.float64)
        self.numeric_ = {str(k): np.asarray(v, dtype=np.float64) for k, v in numeric.items()}
        self.categorical_ = {str(k): [str(x) for x in v] for k, v in categorical.items()}
        self.classes_ = [str(c) for c in classes]
        offsets: dict[str, int] = {}
        pos = self.n_text_
        for col, edges in self.numeric_.items():
            offsets[col] = pos
            pos += len(edges) + 2
        self.cat_index_ = {}
        for col, values in self.categorical_.items():
            offsets[col] = pos
            self.cat_index_[col] = {v: i for i, v in enumerate(values)}
            pos += len(values) + 1
        self.offsets_ = offsets
        self.n_features_ = pos
        self.idf_list_ = self.idf_.tolist()
        self.edges_list_ = {k: v.tolist() for k, v in self.numeric_.items()}
        return self

    @property
    def input_columns(self) -> list[str]:
        return [self.text_column_, *self.numeric_, *self.categorical_]

    # ------------------------------------------------------------------ features
    def _text_row(self, text: object, cols: list[int], vals: list[float], tokens: list[str] | None = None) -> None:
        counts: dict[int, int] = {}
        vocab = self.vocabulary_
        for g in text_features(text) if tokens is None else tokens:
            j = vocab.get(g)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return
        idf = self.idf_list_
        w = [(1.0 + math.log(c)) * idf[j] if c > 1 else idf[j] for j, c in counts.items()]
        norm = math.sqrt(sum(x * x for x in w))
        cols.extend(counts)
        vals.extend(x / norm for x in w)

    def _dense_row(self, rec: Mapping[str, Any], cols: list[int], vals: list[float]) -> None:
        dw = float(self.dense_weight)
        for col, edges in self.edges_list_.items():
            v = rec.get(col)
            base = self.offsets_[col]
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                cols.append(base + len(edges) + 1)
            else:
                cols.append(base + bisect_right(edges, float(v)))
            vals.append(dw)
        for col, index in self.cat_index_.items():
            v = rec.get(col)
            i = index.get(str(v)) if v is not None else None
            cols.append(self.offsets_[col] + (i if i is not None else len(index)))
            vals.append(dw)

    def transform_records(
        self, records: Sequence[Mapping[str, Any]], tokens: Sequence[list[str]] | None = None
    ) -> sp.csr_matrix:
        """The feature matrix of ``records`` (``tokens``: their text features, when already computed)."""
        indptr = [0]
        cols: list[int] = []
        vals: list[float] = []
        for i, rec in enumerate(records):
            self._text_row(rec.get(self.text_column_), cols, vals, None if tokens is None else tokens[i])
            self._dense_row(rec, cols, vals)
            indptr.append(len(cols))
        return sp.csr_matrix((np.asarray(vals), np.asarray(cols, dtype=np.int32), np.asarray(indptr)),
                             shape=(len(records), self.n_features_))

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        cols = [c for c in self.input_columns if c in frame.columns]
        sub = frame[cols].astype(object).where(frame[cols].notna(), None)
        return self.transform_records(sub.to_dict("records"))

    # ------------------------------------------------------------------ scores
    def scores(self, X: sp.csr_matrix) -> np.ndarray:
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def proba_from_scores(self, s: np.ndarray) -> np.ndarray:
        z = s / float(self.temperature_)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict_proba(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        X = self.transform(frame) if isinstance(frame, pd.DataFrame) else self.transform_records(frame)
        return self.proba_from_scores(self.scores(X))

    def predict(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.asarray(self.classes_, dtype=object)[np.argmax(self.predict_proba(frame), axis=1)]  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ explanations
    def feature_names(self) -> list[str]:
        """A readable name per column: ``"oak"`` (an n-gram; ``word`` for whole words), ``amount in [20, 45)``, ``currency=EUR``."""
        names = [""] * self.n_features_
        for g, j in self.vocabulary_.items():
            names[j] = g[2:] if g.startswith("w:") else f"processor {g[2:]}" if g.startswith("p:") else g
        pos = self.n_text_
        for col, edges in self.numeric_.items():
            bounds = [-math.inf, *edges.tolist(), math.inf]
            for b in range(len(edges) + 1):
                names[pos + b] = f"{col} in [{bounds[b]:g}, {bounds[b + 1]:g})"
            names[pos + len(edges) + 1] = f"{col} missing"
            pos += len(edges) + 2
        for col, values in self.categorical_.items():
            for i, v in enumerate(values):
                names[pos + i] = f"{col}={v}"
            names[pos + len(values)] = f"{col}=other"
            pos += len(values) + 1
        return names

    def encode_rows(
        self, records: Sequence[Mapping[str, Any]], tokens: Sequence[list[str]] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each record's (columns, values): the sparse row without building a matrix (the serving path)."""
        out = []
        for i, rec in enumerate(records):
            cols: list[int] = []
            vals: list[float] = []
            self._text_row(rec.get(self.text_column_), cols, vals, None if tokens is None else tokens[i])
            self._dense_row(rec, cols, vals)
            out.append((np.asarray(cols, dtype=np.intp), np.asarray(vals)))
        return out

    def explain_row(self, X: sp.csr_matrix, row: int, class_index: int, top: int) -> list[tuple[int, float]]:
        """The columns of ``X[row]`` that raised class ``class_index``'s score most: (column, contribution)."""
        start, end = X.indptr[row], X.indptr[row + 1]
        idx = X.indices[start:end]
        contrib = X.data[start:end] * self.coef_[class_index, idx]
        order = np.argsort(-contrib)[:top]
        return [(int(idx[i]), float(contrib[i])) for i in order if contrib[i] > 0]
