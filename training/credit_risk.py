"""Credit-risk scoring: an XGBoost classifier behind the shared tabular features.

``train`` and ``evaluate`` are pure: no MLflow, no I/O. The fitted model is a
scikit-learn Pipeline ``[("features", TabularFeatures), ("model", XGBClassifier)]``
so the feature code travels inside the logged model.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field
from pydantic.dataclasses import dataclass
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

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


def predict_proba(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(X))[:, 1]


def evaluate(model: Pipeline, X: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, KS, Brier, log loss and calibration error on (X, y)."""
    metrics = binary_metrics(np.asarray(y).astype(int), predict_proba(model, X))
    metrics["n_trees"] = float(model.named_steps["model"].get_booster().num_boosted_rounds())
    return metrics


def contributions(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Per-row SHAP contributions (log-odds) on the input features, from XGBoost's pred_contribs."""
    import xgboost as xgb

    features: TabularFeatures = model.named_steps["features"]
    booster = model.named_steps["model"].get_booster()
    raw = booster.predict(xgb.DMatrix(features.transform(X)), pred_contribs=True)
    return features.aggregate_contributions(np.asarray(raw))


def feature_importance(model: Pipeline, X: pd.DataFrame) -> dict[str, float]:
    features: TabularFeatures = model.named_steps["features"]
    mean_abs = np.abs(contributions(model, X)).mean(axis=0)
    return {name: float(v) for name, v in zip(features.input_features_, mean_abs, strict=True)}
