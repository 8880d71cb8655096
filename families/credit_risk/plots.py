"""Figures a data scientist opens in the MLflow UI: ROC, calibration, feature importance."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve


def roc_figure(y: np.ndarray, p: np.ndarray, auc: float) -> Figure:
    fpr, tpr, _ = roc_curve(y, p)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, lw=2, label=f"model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test split)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Figure:
    frac, mean_pred = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    lim = float(max(mean_pred.max(), frac.max()) * 1.05)
    ax.plot([0, lim], [0, lim], ls="--", c="grey", label="perfectly calibrated")
    ax.plot(mean_pred, frac, marker="o", lw=2, label="model")
    ax.set(xlabel="mean predicted probability of default", ylabel="observed default rate",
           title="Calibration (test split, quantile bins)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def importance_figure(importance: Mapping[str, float], top: int = 20) -> Figure:
    items = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig = Figure(figsize=(6, 0.35 * len(items) + 1.2))
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="mean |SHAP contribution| (log-odds)", title="Feature importance (test split)")
    fig.tight_layout()
    return fig
