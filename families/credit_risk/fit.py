"""Credit-risk scoring: XGBoost or a scorecard logistic regression behind the shared tabular features.

``train``, ``train_scorecard``, ``select_and_train`` and ``evaluate`` are pure: no MLflow, no
I/O. The fitted model is a scikit-learn Pipeline ``[("features", TabularFeatures), ("model",
XGBClassifier | ScorecardModel)]`` so the feature code travels inside the logged model.

``select_and_train`` (what the family's train step runs) cross-validates both candidates on
the training split (stratified ``cv_folds``), keeps the one with the higher mean ROC-AUC
(``model_choice=auto``; ``xgboost``/``scorecard`` force one), refits it on the whole training
split, and picks the decision threshold from the chosen candidate's out-of-fold scores by the
documented policy:

- ``threshold_policy=cost`` (default): the threshold that minimises the expected cost
  ``cost_ratio * missed defaults + wrongly declined applicants`` (a missed default costs
  ``cost_ratio`` times a wrongly declined good applicant; default 5);
- ``threshold_policy=approval_rate``: the threshold that approves ``target_approval_rate``
  of the applicants.

The choice, both cross-validated scores and the threshold travel with the model
(``selection_`` and ``decision_threshold_`` on the Pipeline), so serving, the gate and the
model card read them from the version itself.
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass as plain_dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from pydantic.dataclasses import dataclass
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from families.credit_risk.model import ScorecardModel
from features.spec import DatasetSpec
from features.transform import TabularFeatures
from ledgerline.metrics import binary_metrics


@dataclass(frozen=True)
class CreditParams:
    """XGBoost hyper-parameters with their allowed ranges (checked when built, before any training)."""

    n_estimators: Annotated[int, Field(ge=1, le=20_000)] = 800
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    max_depth: Annotated[int, Field(ge=1, le=16)] = 4
    min_child_weight: Annotated[float, Field(ge=0.0, le=1e6)] = 5.0
    subsample: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    reg_lambda: Annotated[float, Field(ge=0.0, le=1e6)] = 1.0
    early_stopping_rounds: Annotated[int, Field(ge=1, le=10_000)] = 40
    validation_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    monotone: bool = True  # apply the spec's monotone constraints (regulators expect them)
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    n_jobs: Annotated[int, Field(ge=1, le=256)] = 2
    # model choice (see the module docstring)
    model_choice: Literal["auto", "xgboost", "scorecard"] = "auto"
    cv_folds: Annotated[int, Field(ge=2, le=10)] = 3
    scorecard_c: Annotated[float, Field(gt=0.0, le=1e6)] = 1.0  # inverse L2 strength of the scorecard
    # decision threshold policy
    threshold_policy: Literal["cost", "approval_rate"] = "cost"
    cost_ratio: Annotated[float, Field(gt=0.0, le=1000.0)] = 5.0
    target_approval_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _monotone_constraints(spec: DatasetSpec, features: TabularFeatures) -> tuple[int, ...]:
    sign = {c.name: (1 if c.monotone == "increasing" else -1) for c in spec.columns if c.monotone}
    inputs = features.input_features_
    return tuple(sign.get(inputs[i], 0) for i in features.source_index_)


def train(X: pd.DataFrame, y: np.ndarray, spec: DatasetSpec, params: CreditParams | None = None) -> Pipeline:
    """Fit features + XGBoost with early stopping on a stratified validation split of (X, y)."""
    params = params or CreditParams()
    y = np.asarray(y).astype(int)
    X_fit, X_val, y_fit, y_val = train_test_split(
        X, y, test_size=params.validation_fraction, stratify=y, random_state=params.seed
    )
    features = TabularFeatures(numeric=spec.numeric, categorical=spec.categorical).fit(X_fit)
    constraints = _monotone_constraints(spec, features) if params.monotone else None
    common = dict(
        learning_rate=params.learning_rate,
        max_depth=params.max_depth,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        reg_lambda=params.reg_lambda,
        eval_metric="auc",
        tree_method="hist",
        monotone_constraints=constraints if constraints and any(constraints) else None,
        random_state=params.seed,
        n_jobs=params.n_jobs,
    )
    X_fit_t, X_val_t = features.transform(X_fit), features.transform(X_val)
    probe = XGBClassifier(n_estimators=params.n_estimators, early_stopping_rounds=params.early_stopping_rounds, **common)
    probe.fit(X_fit_t, y_fit, eval_set=[(X_val_t, y_val)], verbose=False)
    # Refit with exactly the best number of trees: the saved booster then holds no trees past
    # early stopping, so raw-booster consumers (serving's inplace_predict, pred_contribs reason
    # codes) give the same probabilities as predict_proba.
    best = int(probe.best_iteration) + 1
    model = XGBClassifier(n_estimators=best, **common)
    model.fit(X_fit_t, y_fit, eval_set=[(X_val_t, y_val)], verbose=False)
    return Pipeline([("features", features), ("model", model)])


def train_scorecard(X: pd.DataFrame, y: np.ndarray, spec: DatasetSpec, params: CreditParams | None = None) -> Pipeline:
    """Fit features + the scorecard logistic regression (standardised, L2) on (X, y)."""
    params = params or CreditParams()
    y = np.asarray(y).astype(int)
    features = TabularFeatures(numeric=spec.numeric, categorical=spec.categorical).fit(X)
    model = ScorecardModel(C=params.scorecard_c).fit(features.transform(X), y)
    return Pipeline([("features", features), ("model", model)])


CANDIDATES = ("xgboost", "scorecard")


@plain_dataclass(frozen=True)
class Selection:
    """What ``select_and_train`` chose and why (logged to the run, shown in the model card)."""

    chosen: str
    cv_roc_auc: dict[str, float]  # candidate -> mean out-of-fold ROC-AUC on the training split
    cv_folds: int
    threshold: float
    threshold_policy: str  # "cost" or "approval_rate"
    policy_text: str  # the policy in words
    cv_approval_rate: float  # approval rate of the out-of-fold scores at the threshold
    cv_bad_rate_approved: float  # default rate among the approved (out of fold)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit(candidate: str, X: pd.DataFrame, y: np.ndarray, spec: DatasetSpec, params: CreditParams) -> Pipeline:
    return train(X, y, spec, params) if candidate == "xgboost" else train_scorecard(X, y, spec, params)


def out_of_fold(candidate: str, X: pd.DataFrame, y: np.ndarray, spec: DatasetSpec, params: CreditParams) -> np.ndarray:
    """Stratified ``cv_folds`` out-of-fold probabilities of ``candidate`` on (X, y)."""
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros(len(y), dtype=np.float64)
    folds = StratifiedKFold(n_splits=params.cv_folds, shuffle=True, random_state=params.seed)
    for fit_idx, val_idx in folds.split(np.zeros(len(y)), y):
        m = _fit(candidate, X.iloc[fit_idx], y[fit_idx], spec, params)
        oof[val_idx] = predict_proba(m, X.iloc[val_idx])
    return oof


def choose_threshold(y: np.ndarray, p: np.ndarray, params: CreditParams) -> tuple[float, str]:
    """The decision threshold by the params' policy, from (out-of-fold) scores; and the policy in words."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if params.threshold_policy == "approval_rate":
        t = float(np.quantile(p, params.target_approval_rate))
        text = f"approve {params.target_approval_rate:.0%} of applicants (the score quantile on out-of-fold predictions)"
        return min(max(t, 1e-6), 1 - 1e-6), text
    # decline when p >= t; cost = cost_ratio * missed defaults (approved bads) + wrongly declined goods
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order]
    bad_below = np.r_[0, np.cumsum(ys)]  # approved bads when the first k (lowest scores) are approved
    good_below = np.r_[0, np.cumsum(1 - ys)]
    cost = params.cost_ratio * bad_below + (good_below[-1] - good_below)
    # a cut between distinct scores only: k approves ps[:k]; t = midpoint of ps[k-1] and ps[k]
    valid = np.r_[True, ps[1:] != ps[:-1], True]
    k = int(np.flatnonzero(valid)[np.argmin(cost[valid])])
    if k == 0:
        t = float(ps[0])
    elif k == len(ps):
        t = float(ps[-1]) + 1e-6
    else:
        t = float((ps[k - 1] + ps[k]) / 2)
    text = (
        f"minimise expected cost: a missed default costs {params.cost_ratio:g} x a wrongly declined applicant "
        f"(chosen on out-of-fold predictions)"
    )
    return min(max(t, 1e-6), 1 - 1e-6), text


def select_and_train(
    X: pd.DataFrame, y: np.ndarray, spec: DatasetSpec, params: CreditParams | None = None
) -> tuple[Pipeline, Selection]:
    """Cross-validate the candidates, refit the best on all of (X, y), pick its threshold."""
    params = params or CreditParams()
    y = np.asarray(y).astype(int)
    candidates = CANDIDATES if params.model_choice == "auto" else (params.model_choice,)
    oof = {c: out_of_fold(c, X, y, spec, params) for c in candidates}
    cv_auc = {c: float(roc_auc_score(y, p)) for c, p in oof.items()}
    chosen = max(candidates, key=lambda c: (cv_auc[c], c == "xgboost"))  # a tie keeps XGBoost
    threshold, text = choose_threshold(y, oof[chosen], params)
    approved = oof[chosen] < threshold
    selection = Selection(
        chosen=chosen,
        cv_roc_auc=cv_auc,
        cv_folds=params.cv_folds,
        threshold=threshold,
        threshold_policy=params.threshold_policy,
        policy_text=text,
        cv_approval_rate=float(approved.mean()),
        cv_bad_rate_approved=float(y[approved].mean()) if approved.any() else 0.0,
    )
    model = _fit(chosen, X, y, spec, params)
    model.decision_threshold_ = threshold
    model.selection_ = selection.as_dict()
    return model, selection


def decision_threshold(model: Any) -> float | None:
    """The threshold recorded with a trained model (None: a model from before thresholds were recorded)."""
    t = getattr(model, "decision_threshold_", None)
    return None if t is None else float(t)


def model_kind(model: Pipeline) -> str:
    return "scorecard" if isinstance(model.named_steps["model"], ScorecardModel) else "xgboost"


def predict_proba(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(X))[:, 1]


def evaluate(model: Pipeline, X: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, KS, Brier, log loss and calibration error on (X, y); at the model's
    threshold (when it has one) also the approval rate and the default rate among the approved."""
    y = np.asarray(y).astype(int)
    p = predict_proba(model, X)
    metrics = binary_metrics(y, p)
    if model_kind(model) == "xgboost":
        metrics["n_trees"] = float(model.named_steps["model"].get_booster().num_boosted_rounds())
    t = decision_threshold(model)
    if t is not None:
        approved = p < t
        metrics["approval_rate"] = float(approved.mean())
        metrics["bad_rate_approved"] = float(y[approved].mean()) if approved.any() else 0.0
    return metrics


def contributions(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Per-row contributions (log-odds) on the input features: XGBoost's TreeSHAP ``pred_contribs``,
    or the scorecard's coefficient x deviation from the average applicant."""
    features: TabularFeatures = model.named_steps["features"]
    clf = model.named_steps["model"]
    if isinstance(clf, ScorecardModel):
        return features.aggregate_contributions(clf.contributions(features.transform(X)))
    import xgboost as xgb

    booster = clf.get_booster()
    raw = booster.predict(xgb.DMatrix(features.transform(X)), pred_contribs=True)
    return features.aggregate_contributions(np.asarray(raw))


def feature_importance(model: Pipeline, X: pd.DataFrame) -> dict[str, float]:
    features: TabularFeatures = model.named_steps["features"]
    mean_abs = np.abs(contributions(model, X)).mean(axis=0)
    return {name: float(v) for name, v in zip(features.input_features_, mean_abs, strict=True)}


def group_labels(values: pd.Series) -> pd.Series:
    """Groups of a protected attribute: a categorical's values, a number's quartile bands."""
    if pd.api.types.is_numeric_dtype(values):
        v = pd.to_numeric(values, errors="coerce")
        edges = np.unique(np.nanquantile(v.dropna(), [0, 0.25, 0.5, 0.75, 1.0])) if v.notna().any() else np.array([])
        if len(edges) < 2:
            return v.map(lambda x: "missing" if pd.isna(x) else "all")
        bands = pd.cut(v, bins=edges, include_lowest=True, duplicates="drop")
        return bands.astype(str).where(v.notna(), "missing")
    return values.astype(object).where(values.notna(), "missing").astype(str)


def group_outcomes(p: np.ndarray, y: np.ndarray, groups: pd.Series, threshold: float) -> tuple[list[dict[str, Any]], float]:
    """Per group: rows, approval rate at the threshold, default rate, ROC-AUC; and the lowest
    approval rate over the highest (the four-fifths rule's ratio; groups under 20 rows are left out of it)."""
    rows = []
    g = np.asarray(groups.astype(str))
    for name in sorted(set(g)):
        m = g == name
        yy, pp = y[m], p[m]
        auc = float(roc_auc_score(yy, pp)) if 0 < yy.sum() < len(yy) else float("nan")
        rows.append({"group": name, "rows": int(m.sum()), "approval_rate": float((pp < threshold).mean()),
                     "default_rate": float(yy.mean()), "roc_auc": auc})
    rates = [r["approval_rate"] for r in rows if r["rows"] >= 20]
    ratio = float(min(rates) / max(rates)) if rates and max(rates) > 0 else float("nan")
    return rows, ratio


def approval_ratio(model: Pipeline, frame: pd.DataFrame, y: np.ndarray, protected: tuple[str, ...], X: pd.DataFrame) -> float | None:
    """The lowest four-fifths ratio over the protected attributes at the model's threshold (None: not measurable)."""
    t = decision_threshold(model)
    if t is None or not protected:
        return None
    p = predict_proba(model, X)
    ratios = [group_outcomes(p, y, group_labels(frame[c]), t)[1] for c in protected if c in frame.columns]
    finite = [r for r in ratios if r == r]
    return min(finite) if finite else None
