"""Transaction anomaly detection: an Isolation Forest with a threshold at an alert budget.

Pure steps, no MLflow here::

    X = prepare_features(df, dataset)       # behavioural features, or the table's own columns
    model = train(X, params)                 # labels never reach the model
    metrics = evaluate(model, X_test, y_test, patterns_test)

``prepare_features`` computes the behavioural features (families/transaction_anomaly/behaviour.py) when the
table has customer, timestamp and amount columns; otherwise the forest runs on the
columns given (numbers as they are, text columns as ordinal codes), without the id,
label and evaluation-only columns.

The threshold is calibrated on the training scores: with budget b and n rows, the
``ceil(b * n)``-th highest training score; a transaction is an anomaly when its score is
at or above it, so the training alert rate is b (up to ties).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import train_test_split

from families.transaction_anomaly.behaviour import FEATURE_NAMES, PROFILE_FREE_FEATURES, compute_offline
from families.transaction_anomaly.data import DEFAULT_DATASET, TransactionDataset
from families.transaction_anomaly.model import IsolationForestDetector
from ledgerline.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "max_samples": 256,
    "alert_budget": 0.005,
    "random_state": 0,
}
MAX_CATEGORIES = 50  # text columns with more distinct values (ids, free text) are left out


def train(X: pd.DataFrame, params: Mapping[str, Any] | None = None) -> IsolationForestDetector:
    """Fit the detector on features only; unknown params are an error."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    unknown = sorted(set(merged) - set(DEFAULT_PARAMS))
    if unknown:
        raise DataError(f"unknown anomaly parameters {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    detector = IsolationForestDetector(**merged).fit(X)
    if set(detector.columns_) <= set(FEATURE_NAMES):
        # the answer while the profile store is down: a forest on what a transaction has without its history,
        # calibrated to the same alert budget, so an outage cannot turn a large transaction into "no alert"
        detector.profile_free_ = IsolationForestDetector(**merged).fit(X[list(PROFILE_FREE_FEATURES)])
    return detector


def has_behaviour(df: pd.DataFrame, dataset: TransactionDataset = DEFAULT_DATASET) -> bool:
    return all(c in df.columns for c in (dataset.customer_column, dataset.timestamp_column, dataset.amount_column))


def prepare_features(df: pd.DataFrame, dataset: TransactionDataset = DEFAULT_DATASET) -> pd.DataFrame:
    """The model's input table for ``df`` (same index); never contains the label or evaluation-only columns."""
    if has_behaviour(df, dataset):
        return compute_offline(df, dataset)
    drop = {c for c in (dataset.id_column, *dataset.evaluation_only) if c}
    keep: list[str] = []
    for c in df.columns:
        if c in drop:
            continue
        s = df[c]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            n_distinct = s.nunique(dropna=True)
            if n_distinct > MAX_CATEGORIES:
                logger.info("column %s left out: %d distinct text values (more than %d)", c, n_distinct, MAX_CATEGORIES)
                continue
        keep.append(str(c))
    if not keep:
        raise DataError("no usable columns: give numeric columns or text columns with at most "
                        f"{MAX_CATEGORIES} distinct values (ids, labels and evaluation columns are left out)")
    return df[keep].copy()


def split(df: pd.DataFrame, dataset: TransactionDataset = DEFAULT_DATASET, test_fraction: float = 0.25,
          seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout split: the latest ``test_fraction`` by time when there is a timestamp column, else random
    (stratified on the label when there is one). Compute behavioural features on the whole snapshot first;
    they are point-in-time, so the split leaks nothing."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    tcol = dataset.timestamp_column
    if tcol in df.columns:
        ts = pd.to_datetime(df[tcol], utc=True)
        order = np.argsort(ts.to_numpy(), kind="stable")
        n_test = max(1, int(round(len(df) * test_fraction)))
        cut = len(df) - n_test
        return df.iloc[np.sort(order[:cut])], df.iloc[np.sort(order[cut:])]
    label = dataset.label_column
    strat = df[label] if label and label in df.columns and df[label].nunique() > 1 else None
    train_df, test_df = train_test_split(df, test_size=test_fraction, random_state=seed, stratify=strat)
    return train_df, test_df


def evaluate(model: IsolationForestDetector, X: pd.DataFrame, y: np.ndarray | pd.Series | None = None,
             patterns: np.ndarray | pd.Series | None = None) -> dict[str, float]:
    """Alert rate at the budget; with labels also precision, recall, ROC-AUC, PR-AUC and recall per pattern."""
    scores = model.score(X)
    alert = scores >= model.threshold_
    out: dict[str, float] = {"alert_rate": float(alert.mean()), "threshold": float(model.threshold_),
                             "alert_budget": float(model.alert_budget)}
    if y is None:
        return out
    yv = np.asarray(y).astype(int)
    tp = int((alert & (yv == 1)).sum())
    out["precision_at_budget"] = tp / int(alert.sum()) if alert.any() else 0.0
    out["recall_at_budget"] = tp / int(yv.sum()) if yv.any() else 0.0
    if 0 < yv.sum() < len(yv):
        out["roc_auc"] = float(roc_auc_score(yv, scores))
        out["pr_auc"] = float(average_precision_score(yv, scores))
    if patterns is not None:
        pv = pd.Series(np.asarray(patterns, dtype=object))
        for name in sorted(pv.dropna().unique()):
            mask = (pv == name).to_numpy()
            out[f"recall_{name}"] = float(alert[mask].mean())
    return out


def score_distribution_figure(scores: np.ndarray, threshold: float, y: np.ndarray | None = None) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)), 60).tolist()
    if y is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="transactions")
    else:
        yv = np.asarray(y).astype(bool)
        ax.hist(scores[~yv], bins=bins, color="tab:blue", alpha=0.7, label="normal", density=True)
        ax.hist(scores[yv], bins=bins, color="tab:red", alpha=0.6, label="fraud", density=True)
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="anomaly score", ylabel="density" if y is not None else "transactions",
           title="Score distribution (holdout)")
    ax.legend()
    fig.tight_layout()
    return fig


def precision_recall_figure(scores: np.ndarray, y: np.ndarray, threshold: float | None = None) -> Figure:
    yv = np.asarray(y).astype(int)
    precision, recall, thr = precision_recall_curve(yv, scores)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(recall, precision, lw=2, label=f"model (PR-AUC = {average_precision_score(yv, scores):.3f})")
    ax.axhline(yv.mean(), ls="--", c="grey", label="base rate")
    if threshold is not None and len(thr):
        i = min(int(np.searchsorted(thr, threshold)), len(thr) - 1)
        ax.plot(recall[i], precision[i], "o", c="black", label="at the alert budget")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
