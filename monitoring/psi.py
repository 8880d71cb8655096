"""Population stability index (PSI) in NumPy, on every row.

``PSI = sum_i (c_i - r_i) * ln(c_i / r_i)`` over bins with reference shares ``r`` and
current shares ``c``. Numeric bins are the reference's quantiles (deciles by
default), open at both ends so current values outside the reference range still
land in a bin; a numeric column with few distinct reference values (counts,
terms) gets one bin per value. Missing values are a bin of their own, so a rise
in missing inputs is a shift too. Empty bins are floored at ``EPSILON`` so the
logarithm stays finite (the usual convention).

Bands, conventionally: below 0.10 stable, 0.10-0.25 moderate, 0.25 and above significant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPSILON = 1e-4
MAX_DISCRETE_VALUES = 20


def band(psi: float, moderate: float = 0.10, significant: float = 0.25) -> str:
    """``stable`` / ``moderate`` / ``significant`` for a PSI value (NaN counts as stable: nothing to compare)."""
    if not np.isfinite(psi) or psi < moderate:
        return "stable"
    return "moderate" if psi < significant else "significant"


BAND_ORDER = {"stable": 0, "moderate": 1, "significant": 2}


def at_least(observed: str, threshold: str) -> bool:
    """Whether band ``observed`` is ``threshold`` or worse."""
    return BAND_ORDER[observed] >= BAND_ORDER[threshold]


def psi_from_counts(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """PSI of two histograms over the same bins (counts or shares)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"histograms differ in shape: {ref.shape} vs {cur.shape}")
    if ref.sum() <= 0 or cur.sum() <= 0:
        return float("nan")
    r = np.maximum(ref / ref.sum(), epsilon)
    c = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True)
class NumericBins:
    """Bin edges fitted on the reference: values ``x`` go to ``searchsorted(edges, x, 'right')``; NaN to the last bin."""

    edges: np.ndarray
    discrete: bool

    @property
    def n_bins(self) -> int:
        return len(self.edges) + 2  # the open-ended value bins + one for missing

    @classmethod
    def fit(cls, reference: np.ndarray, bins: int = 10) -> NumericBins:
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[~np.isnan(ref)]
        if ref.size == 0:
            return cls(np.empty(0), discrete=True)
        interior = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        if interior.size < bins - 1:  # ties: maybe a count or a code, give each value its own bin
            distinct = pd.unique(ref)
            if distinct.size <= MAX_DISCRETE_VALUES:
                values = np.sort(distinct)
                return cls(values[1:], discrete=True)  # bin i holds values[i] (and what lies up to values[i+1])
        return cls(interior, discrete=False)

    def counts(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        missing = np.isnan(x)
        idx = np.searchsorted(self.edges, x[~missing], side="right")
        out = np.bincount(idx, minlength=len(self.edges) + 1).astype(np.float64)
        return np.append(out, float(missing.sum()))


def numeric_histograms(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples over the reference's bins; the last bin counts missing values."""
    fitted = NumericBins.fit(reference, bins)
    return fitted.counts(reference), fitted.counts(current)


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    return psi_from_counts(*numeric_histograms(reference, current, bins))


def _category_counts(values: pd.Series | np.ndarray) -> pd.Series:
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    counts = s.value_counts(dropna=False)  # hash-based, O(n); keys are made strings after counting
    keys = [MISSING if pd.isna(k) else str(k) for k in counts.index]
    return pd.Series(counts.to_numpy(), index=keys).groupby(level=0).sum()


MISSING = "\0missing"


def categorical_histograms(
    reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Counts of both samples over the union of categories (as strings; ``MISSING`` for missing values)."""
    ref = _category_counts(reference)
    cur = _category_counts(current)
    cats = ref.index.union(cur.index)
    return (
        ref.reindex(cats, fill_value=0).to_numpy(dtype=np.float64),
        cur.reindex(cats, fill_value=0).to_numpy(dtype=np.float64),
        [str(c) for c in cats],
    )


def psi_categorical(reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray) -> float:
    """PSI over the union of categories (as strings); missing is a category of its own."""
    ref, cur, _ = categorical_histograms(reference, current)
    return psi_from_counts(ref, cur)
