"""Binary-classifier metrics (pure NumPy and scikit-learn), shared by training families and monitoring."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score CDFs of positives and negatives."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    if y.all() or (~y).all():
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order]
    cdf_pos = np.cumsum(ys) / ys.sum()
    cdf_neg = np.cumsum(~ys) / (~ys).sum()
    # evaluate only at distinct thresholds: the last position of every run of tied scores
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    return float(np.max(np.abs(cdf_pos[last_of_tie] - cdf_neg[last_of_tie])))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean score| over equal-width bins, weighted by bin size."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / max(len(y), 1))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "ks": ks_statistic(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "calibration_error": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()),
        "n": float(len(y)),
    }


def wilson_interval(rate: float, n: int, z: float = 2.576) -> tuple[float, float]:
    """The Wilson score interval of a proportion observed on ``n`` rows (z = 2.576: 99 %)."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denom
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rank_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties averaged: the same value as
    ``roc_auc_score`` without its input checks (for bootstrap loops)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (PR-AUC as ``average_precision_score`` computes it, ties grouped)."""
    y = np.asarray(y).astype(int)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="mergesort")
    ps, ys = np.asarray(p)[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # the last row of each run of tied scores
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1 - ys)[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
