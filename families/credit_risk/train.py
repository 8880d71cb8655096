"""Credit-risk scoring as a family plug-in: binary target, stratified holdout, XGBoost or a scorecard
logistic regression (chosen by cross-validated ROC-AUC) behind the shared tabular features, a
decision threshold chosen at training, gated on ROC-AUC, PR-AUC and Brier score."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from families.credit_risk.settings import CreditRiskSettings
from ledgerline import lineage
from ledgerline.families import GatePolicy, MetricRule, TargetKind
from training.family import FamilyParams, Report, TrainingFamilyBase
from training.model_logging import log_skops_model, typed_params

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from features.spec import DatasetSpec, PartialSpec
    from ledgerline.settings import Settings
    from training.cards import CardParts

# skops (MLflow's safe default) refuses unknown types; these are ours and XGBoost's, nothing else.
SKOPS_TRUSTED_TYPES = [
    "families.credit_risk.model.ScorecardModel",
    "features.transform.TabularFeatures",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
]
MODEL_KIND_TAG = lineage.MODEL_KIND
THRESHOLD_TAG = lineage.DECISION_THRESHOLD
TEST_FRACTION = 0.2


class CreditRiskFamily(TrainingFamilyBase["Pipeline"]):
    name = "credit-risk"
    target_kind: TargetKind = "binary"
    test_fraction = TEST_FRACTION
    headline_metrics = ("roc_auc", "pr_auc", "ks", "brier", "log_loss")

    # --- data contract --------------------------------------------------------------
    def default_spec(self, model_name: str) -> DatasetSpec:
        from families.credit_risk.data import credit_spec

        return credit_spec(model_name)

    def generate(self, rows: int, seed: int) -> pd.DataFrame:
        from families.credit_risk.data import generate_loan_applications

        return generate_loan_applications(rows, seed)

    def infer_spec(
        self, raw: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
    ) -> DatasetSpec:
        from features.spec import infer_spec

        return infer_spec(raw, target=target, positive_label=positive_label, partial=partial, name=name)

    def conform(self, raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        from features.spec import conform

        return conform(raw, spec)

    def split(self, frame: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        from sklearn.model_selection import train_test_split

        from features.spec import LABEL_COLUMN

        train_df, test_df = train_test_split(
            frame, test_size=TEST_FRACTION, stratify=frame[LABEL_COLUMN], random_state=seed
        )
        return train_df, test_df

    # --- train / evaluate -------------------------------------------------------------
    def params(self, seed: int, overrides: Mapping[str, object] | None) -> FamilyParams:
        from families.credit_risk.fit import CreditParams

        return typed_params(CreditParams(seed=seed), self.name, overrides)

    def train(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> Pipeline:
        from families.credit_risk import fit as credit_risk
        from features.spec import LABEL_COLUMN

        assert isinstance(params, credit_risk.CreditParams)
        model, _ = credit_risk.select_and_train(frame[spec.feature_names], frame[LABEL_COLUMN].to_numpy(), spec, params)
        return model

    def evaluate(self, model: Pipeline, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
        from families.credit_risk import fit as credit_risk
        from features.spec import LABEL_COLUMN

        X, y = frame[spec.feature_names], frame[LABEL_COLUMN].to_numpy()
        metrics = credit_risk.evaluate(model, X, y)
        ratio = credit_risk.approval_ratio(model, frame, y.astype(int), spec.protected, X)
        if ratio is not None:
            metrics["approval_ratio"] = ratio
        return metrics

    def report(
        self, model: Pipeline, frame: pd.DataFrame, spec: DatasetSpec, metrics: Mapping[str, float]
    ) -> Report:
        from families.credit_risk import fit as credit_risk
        from families.credit_risk import plots
        from features.spec import LABEL_COLUMN

        X, y = frame[spec.feature_names], frame[LABEL_COLUMN].to_numpy()
        p = credit_risk.predict_proba(model, X)
        importance = credit_risk.feature_importance(model, X)
        selection = getattr(model, "selection_", None) or {}
        threshold = credit_risk.decision_threshold(model)
        cv = {f"cv_roc_auc_{k}": float(v) for k, v in dict(selection.get("cv_roc_auc", {})).items()}
        tags = {MODEL_KIND_TAG: credit_risk.model_kind(model)}
        if threshold is not None:
            tags[THRESHOLD_TAG] = f"{threshold:.6f}"
        return Report(
            figures={
                "plots/roc_curve.png": plots.roc_figure(y, p, metrics["roc_auc"]),
                "plots/calibration.png": plots.calibration_figure(y, p),
                "plots/feature_importance.png": plots.importance_figure(importance),
            },
            documents={"plots/feature_importance.json": dict(importance), "model/selection.json": dict(selection)},
            params={"chosen_model": tags[MODEL_KIND_TAG], "decision_threshold": threshold},
            metrics={**cv, **({"decision_threshold": threshold} if threshold is not None else {})},
            tags=tags,
        )

    # --- gate ---------------------------------------------------------------------------
    def gate_policy(self, settings: Settings) -> GatePolicy:
        t = CreditRiskSettings.of(settings.families).gate
        return GatePolicy(
            (
                MetricRule("roc_auc", "higher", bound=t.min_roc_auc, tolerance=t.tolerance),
                MetricRule("pr_auc", "higher", bound=t.min_pr_auc),
                MetricRule("brier", "lower", bound=t.max_brier),
                *(
                    # the four-fifths rule when asked for: measured only when the spec marks protected attributes
                    (MetricRule("approval_ratio", "higher", bound=t.min_approval_ratio, required=False),)
                    if t.min_approval_ratio is not None else ()
                ),
            )
        )

    # --- model I/O ------------------------------------------------------------------------
    def log_model(self, model: Pipeline, frame: pd.DataFrame, spec: DatasetSpec) -> str:
        example = frame[spec.feature_names].head(5)
        return log_skops_model(model, example, ("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "skops", "pyarrow"),
                               SKOPS_TRUSTED_TYPES, __file__)

    def load_model(self, model_uri: str) -> Pipeline:
        from sklearn.pipeline import Pipeline

        from features.model_io import load_model_as

        return load_model_as(model_uri, Pipeline)

    # --- model card -------------------------------------------------------------------------
    def card_parts(self, model: Pipeline, frame: pd.DataFrame, spec: DatasetSpec, settings: Settings) -> CardParts:
        import numpy as np

        from families.credit_risk import fit as credit_risk
        from features.spec import LABEL_COLUMN
        from ledgerline.metrics import average_precision, ks_statistic, rank_auc
        from training import cards

        X, y = frame[spec.feature_names], frame[LABEL_COLUMN].to_numpy().astype(int)
        p = credit_risk.predict_proba(model, X)
        t = credit_risk.decision_threshold(model)

        def metrics_of(idx: np.ndarray) -> dict[str, float]:
            yy, pp = y[idx], p[idx]
            if not 0 < yy.sum() < len(yy):
                return {}
            out = {"roc_auc": rank_auc(yy, pp), "pr_auc": average_precision(yy, pp), "ks": ks_statistic(yy, pp),
                   "brier": float(np.mean((pp - yy) ** 2))}
            if t is not None:
                approved = pp < t
                out["approval_rate"] = float(approved.mean())
                out["bad_rate_approved"] = float(yy[approved].mean()) if approved.any() else 0.0
            return out

        selection = getattr(model, "selection_", None) or {}
        kind = credit_risk.model_kind(model)
        facts = {"algorithm": "XGBoost (gradient-boosted trees, monotone constraints from the spec)" if kind == "xgboost"
                 else "scorecard: L2-regularised logistic regression on standardised features"}
        if selection.get("cv_roc_auc"):
            scores = ", ".join(f"{k} {v:.4f}" for k, v in selection["cv_roc_auc"].items())
            facts["choice"] = f"{selection.get('chosen')} by {selection.get('cv_folds')}-fold cross-validated ROC-AUC on the training split ({scores})"
        if t is not None:
            facts["decision threshold"] = f"{t:.4f}: decline when the probability of default is at or above it"
            facts["threshold policy"] = str(selection.get("policy_text", "recorded with the model"))
            facts["threshold override"] = "per model in serving: LEDGERLINE_CREDIT_RISK_THRESHOLDS='{\"<model>\": 0.25}'"
        sections: dict[str, str] = {}
        if spec.protected and t is not None:
            parts = []
            floor = CreditRiskSettings.of(settings.families).gate.min_approval_ratio
            for column in spec.protected:
                if column not in frame.columns:
                    continue
                rows, ratio = credit_risk.group_outcomes(p, y, credit_risk.group_labels(frame[column]), t)
                verdict = "meets" if ratio >= 0.8 else "does NOT meet"
                parts.append(
                    f"**{column}**: lowest approval rate / highest = {ratio:.3f}, which {verdict} the four-fifths rule (0.8)"
                    + (f"; the gate requires {floor:g}" if floor is not None else "; not gated (LEDGERLINE_CREDIT_RISK_GATE__MIN_APPROVAL_RATIO unset)")
                    + "\n\n" + cards.table(
                        [(r["group"], r["rows"], f"{r['approval_rate']:.3f}", f"{r['default_rate']:.3f}",
                          "n/a" if r["roc_auc"] != r["roc_auc"] else f"{r['roc_auc']:.3f}") for r in rows],
                        ["group", "rows", "approval rate", "default rate", "ROC-AUC"],
                    )
                )
            sections["Outcomes per protected group (holdout, at the decision threshold)"] = "\n\n".join(parts)
        return cards.CardParts(
            intended_use=(
                f"Estimates the probability that a credit applicant defaults ({spec.target} = {spec.positive_label!r}) "
                "from the application's fields, with the top reason codes, to support a lending decision at the "
                "model's threshold. A decision aid for applicants like those in the training data; not for other "
                "products, populations or for setting prices without a separate review."
            ),
            metrics=cards.bootstrap(len(y), metrics_of, seed=7),
            limitations=[
                "trained on one snapshot; applicants unlike those in it (new products, regions, channels) are out of scope",
                "only approved-and-observed loans have outcomes in typical credit data (reject inference is not done)",
                "probabilities are as calibrated as the holdout's calibration error shows; the threshold assumes they are",
                "reason codes explain the model's log-odds, not causes",
                *(["protected attributes are not marked in the spec, so outcomes per group are not reported"]
                  if not spec.protected else []),
            ],
            watched=[
                "drift of every input field and of the probability of default (PSI, Evidently)",
                "live ROC-AUC, PR-AUC and calibration error from outcome feedback (POST /v1/feedback)",
            ],
            sections=sections,
            model_facts=facts,
        )


FAMILY = CreditRiskFamily()
