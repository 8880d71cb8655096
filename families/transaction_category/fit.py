"""Pure train / evaluate of the transaction-categorisation model (no MLflow here).

Two linear candidates over the same features (:mod:`families.transaction_category.model`) are compared on a
merchant-grouped validation split carved out of the training rows (no merchant on both sides):
a logistic regression and a linear SVM, both one-vs-rest and fitted by SGD (the log loss and the
hinge loss, L2 penalty ``alpha``). The one with the
higher validation macro-F1 (ties: lower log-loss) is refitted on all training rows. Each is
calibrated the same way: a softmax temperature fitted on the validation split by log-loss. The
test holdout is never used to choose.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from families.transaction_category.data import text_features
from families.transaction_category.model import AMOUNT_BINS, CategoryModel, fit_vocabulary
from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)
CANDIDATES = ("logreg", "linear_svm")


@dataclass(frozen=True)
class CategoryParams:
    candidates: str = "logreg,linear_svm"  # compared on the grouped validation split; the best is kept
    alpha: float = 1e-5  # L2 penalty of both candidates (SGD on the log loss, and on the hinge loss)
    epochs: int = 10
    min_df: int = 2
    max_features: int = 200_000
    validation_fraction: float = 0.2
    correction_weight: float = 5.0  # sample weight of a user's corrected line against a generated/imported one
    dense_weight: float = 1.0
    seed: int = 42
    _names: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(c.strip() for c in self.candidates.split(",") if c.strip())
        bad = [c for c in names if c not in CANDIDATES]
        if not names or bad:
            raise LedgerlineError(f"candidates must name some of {list(CANDIDATES)}, not {self.candidates!r}")
        object.__setattr__(self, "_names", names)
        if not 1e-8 <= self.alpha <= 1.0:
            raise LedgerlineError(f"alpha must be between 1e-8 and 1, not {self.alpha}")
        if not 1 <= self.epochs <= 1000:
            raise LedgerlineError(f"epochs must be between 1 and 1000, not {self.epochs}")
        if not 1 <= self.min_df <= 1000:
            raise LedgerlineError(f"min_df must be between 1 and 1000, not {self.min_df}")
        if not 100 <= self.max_features <= 2_000_000:
            raise LedgerlineError(f"max_features must be between 100 and 2000000, not {self.max_features}")
        if not 0.05 <= self.validation_fraction <= 0.5:
            raise LedgerlineError(f"validation_fraction must be between 0.05 and 0.5, not {self.validation_fraction}")
        if not 1.0 <= self.correction_weight <= 100.0:
            raise LedgerlineError(f"correction_weight must be between 1 and 100, not {self.correction_weight}")
        if not 0.0 < self.dense_weight <= 10.0:
            raise LedgerlineError(f"dense_weight must be in (0, 10], not {self.dense_weight}")

    @property
    def candidate_names(self) -> tuple[str, ...]:
        return self._names

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("_names", None)
        return d


@dataclass(frozen=True)
class Columns:
    """The model's inputs in a conformed frame."""

    text: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]


def _quantile_edges(values: pd.Series) -> np.ndarray:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.asarray([], dtype=np.float64)
    qs = np.quantile(v, np.linspace(0, 1, AMOUNT_BINS + 1)[1:-1])
    return np.unique(np.round(qs, 2))


def build_model(frame: pd.DataFrame, cols: Columns, classes: Sequence[str], params: CategoryParams) -> tuple[CategoryModel, list[list[str]]]:
    """The feature layout (vocabulary, IDF, bins, values) fitted on ``frame``; and its tokenised texts."""
    toks = [text_features(t) for t in frame[cols.text].tolist()]
    vocab, idf, _ = fit_vocabulary(toks, min_df=params.min_df, max_features=params.max_features)
    numeric = {c: _quantile_edges(frame[c]) for c in cols.numeric}
    categorical = {c: sorted({str(v) for v in frame[c].dropna().unique()}) for c in cols.categorical}
    model = CategoryModel(dense_weight=params.dense_weight).setup(cols.text, vocab, idf, numeric, categorical, classes)
    return model, toks


def _fit_linear(name: str, X: Any, y: np.ndarray, w: np.ndarray, n_classes: int, params: CategoryParams) -> tuple[np.ndarray, np.ndarray]:
    """(coef K x F, intercept K) of one candidate."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        from sklearn.linear_model import SGDClassifier

        clf: Any = SGDClassifier(
            loss="log_loss" if name == "logreg" else "hinge", alpha=params.alpha, max_iter=params.epochs, tol=1e-4,
            random_state=params.seed, average=False,
        )
        clf.fit(X, y, sample_weight=w)
    coef = np.zeros((n_classes, X.shape[1]))
    intercept = np.full(n_classes, -1e3)  # a class absent from these rows is never chosen
    present = clf.classes_.astype(int)
    if len(present) == 2 and clf.coef_.shape[0] == 1:  # binary: one row of weights for the second class
        coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
        coef[present[0]], intercept[present[0]] = 0.0, 0.0
    else:
        coef[present], intercept[present] = clf.coef_, clf.intercept_
    return coef, intercept


def _softmax(s: np.ndarray, t: float) -> np.ndarray:
    z = s / t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature minimising validation log-loss (calibration)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = _softmax(scores, math.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-3})
    return float(math.exp(res.x))


def grouped_split(groups: np.ndarray, fraction: float, seed: int, forced_train: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, holdout) with no group on both sides; about ``fraction`` of the groups held out.

    Groups are assigned by a seeded hash of their name, so the split is the same whatever the row
    order; ``forced_train`` rows (users' corrections) always stay on the training side.
    """
    import zlib

    keys = pd.Series(groups).astype(str).to_numpy()
    uniq = np.unique(keys)
    salt = str(seed).encode()
    held = {g for g in uniq if (zlib.crc32(salt + g.encode()) % 10_000) / 10_000 < fraction}
    mask = np.fromiter((k in held for k in keys), dtype=bool, count=len(keys))
    if forced_train is not None:
        forced_groups = set(keys[forced_train])
        mask &= ~np.fromiter((k in forced_groups for k in keys), dtype=bool, count=len(keys))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def classification_metrics(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1, top-3 accuracy, log-loss, expected calibration error, per-class recall."""
    from sklearn.metrics import f1_score, recall_score

    k = len(classes)
    pred = proba.argmax(axis=1)
    labels = np.arange(k)
    present = np.unique(y)
    out: dict[str, float] = {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "top3_accuracy": float((np.argsort(-proba, axis=1)[:, :3] == y[:, None]).any(axis=1).mean()),
        "log_loss": float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).mean()),
        "ece": expected_calibration_error(proba, y),
        "rows": float(len(y)),
    }
    recalls = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    per_class = {str(classes[int(i)]): float(recalls[i]) for i in labels if i in present}
    for name, r in per_class.items():
        out[f"recall_{name}"] = r
    out["min_class_recall"] = min(per_class.values()) if per_class else float("nan")
    for i, name in enumerate(classes):  # the predicted-category mix (monitoring's PSI baseline)
        out[f"share_{name}"] = float((pred == i).mean())
    return out


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += float(m.mean()) * abs(float(correct[m].mean()) - float(conf[m].mean()))
    return ece


def train(
    frame: pd.DataFrame,
    y: np.ndarray,
    cols: Columns,
    classes: Sequence[str],
    params: CategoryParams,
    *,
    groups: np.ndarray,
    weights: np.ndarray | None = None,
    corrected: np.ndarray | None = None,
) -> CategoryModel:
    """Compare the candidates on a merchant-grouped validation split, refit the best on every row."""
    t0 = time.perf_counter()
    w = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=np.float64)
    fit_idx, val_idx = grouped_split(groups, params.validation_fraction, params.seed + 1, corrected)
    if len(val_idx) == 0 or len(fit_idx) == 0:
        raise LedgerlineError("too few merchants to hold some out for choosing the model; add data")
    model, toks = build_model(frame, cols, classes, params)
    records = frame[model.input_columns].astype(object).where(frame[model.input_columns].notna(), None).to_dict("records")
    X = model.transform_records(records, toks)
    k = len(classes)
    comparison: dict[str, dict[str, float]] = {}
    for name in params.candidate_names:
        c0 = time.perf_counter()
        coef, intercept = _fit_linear(name, X[fit_idx], y[fit_idx], w[fit_idx], k, params)
        s_val = np.asarray(X[val_idx] @ coef.T) + intercept
        temp = fit_temperature(s_val, y[val_idx])
        m = classification_metrics(y[val_idx], _softmax(s_val, temp), classes)
        comparison[name] = {
            "macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "top3_accuracy": m["top3_accuracy"],
            "log_loss": m["log_loss"], "ece": m["ece"], "temperature": temp, "fit_seconds": time.perf_counter() - c0,
        }
        logger.info("candidate %s: validation macro-F1 %.4f, log-loss %.4f", name, m["macro_f1"], m["log_loss"])
    best = max(comparison, key=lambda n: (round(comparison[n]["macro_f1"], 4), -comparison[n]["log_loss"]))
    coef, intercept = _fit_linear(best, X, y, w, k, params)
    model.coef_ = coef
    model.intercept_ = intercept
    model.temperature_ = comparison[best]["temperature"]
    model.candidate_ = best
    model.comparison_ = {
        "chosen": best,
        "chosen_by": "macro_f1 on a merchant-grouped validation split of the training rows (ties: log_loss)",
        "validation_rows": int(len(val_idx)),
        "validation_merchants": int(len(np.unique(np.asarray(groups)[val_idx]))),
        "candidates": comparison,
        "train_seconds": time.perf_counter() - t0,
    }
    del toks
    return model


def evaluate(model: CategoryModel, frame: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    proba = model.predict_proba(frame)
    return classification_metrics(y, proba, list(model.classes_))


def confusion_figure(model: CategoryModel, frame: pd.DataFrame, y: np.ndarray) -> Figure:
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    classes = list(model.classes_)
    pred = model.predict_proba(frame).argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=np.arange(len(classes))).astype(float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(6.0, 0.45 * len(classes) + 3)
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (merchants unseen at training)")
    ax.set_title("confusion matrix on the merchant-grouped holdout (row-normalised)")
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def reliability_figure(model: CategoryModel, frame: pd.DataFrame, y: np.ndarray) -> Figure:
    from matplotlib.figure import Figure

    proba = model.predict_proba(frame)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, 11)
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.sum() >= 5:
            xs.append(float(conf[m].mean()))
            ys.append(float(correct[m].mean()))
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(xs, ys, "o-")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("calibration on the holdout")
    fig.tight_layout()
    return fig


__all__ = ["CategoryParams", "Columns", "classification_metrics", "evaluate", "grouped_split", "train"]
