"""Transaction anomaly detection as a family plug-in: no target for the model (a label, when the data
has one, is for evaluation and the gate only), a time-ordered holdout, an Isolation Forest on
point-in-time behavioural features, gated on its alert rate against the budget and, with labels,
recall at the budget and PR-AUC against the champion.

The behavioural features (families/transaction_anomaly/behaviour.py) are computed over the whole conformed snapshot
before the split: they are point in time, so no row sees anything after itself, and test rows
see their customers' training-period history as serving does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ledgerline.errors import LedgerlineError
from ledgerline.families import GatePolicy, MetricRule, TargetKind
from training.family import FamilyParams, Report, TrainingFamilyBase
from training.model_logging import log_skops_model, typed_params

if TYPE_CHECKING:
    import pandas as pd

    from families.transaction_anomaly.model import IsolationForestDetector
    from features.spec import DatasetSpec, PartialSpec
    from ledgerline.settings import Settings
    from training.cards import CardParts

SKOPS_TRUSTED_TYPES = ["families.transaction_anomaly.model.IsolationForestDetector", "sklearn.tree._tree.Tree"]
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class AnomalyParams:
    n_estimators: int = 200
    max_samples: int = 256
    alert_budget: float = 0.005
    random_state: int = 42

    def __post_init__(self) -> None:
        if not 1 <= self.n_estimators <= 2_000:
            raise LedgerlineError(f"n_estimators must be between 1 and 2000, not {self.n_estimators}")
        if not 2 <= self.max_samples <= 100_000:
            raise LedgerlineError(f"max_samples must be between 2 and 100000, not {self.max_samples}")
        if not 0.0 < self.alert_budget < 0.5:
            raise LedgerlineError(
                f"alert_budget is the share of transactions to alert on, between 0 and 0.5; not {self.alert_budget}"
            )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def has_behaviour(spec: DatasetSpec) -> bool:
    from families.transaction_anomaly.data import has_behaviour_roles

    return has_behaviour_roles(spec)


def model_inputs(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """What the forest sees: the behavioural features (present after :meth:`split`), or the spec's columns."""
    from families.transaction_anomaly.behaviour import FEATURE_NAMES
    from families.transaction_anomaly.fit import prepare_features

    if has_behaviour(spec):
        return frame[list(FEATURE_NAMES)]
    plain = [c for c in spec.feature_names if spec.column(c).kind != "datetime"]
    return prepare_features(frame[plain])


class TransactionAnomalyFamily(TrainingFamilyBase["IsolationForestDetector"]):
    name = "transaction-anomaly"
    target_kind: TargetKind = "none"
    test_fraction = TEST_FRACTION
    headline_metrics = ("alert_rate", "precision_at_budget", "recall_at_budget", "roc_auc", "pr_auc")

    # --- data contract --------------------------------------------------------------
    def default_spec(self, model_name: str) -> DatasetSpec:
        from families.transaction_anomaly.data import transaction_spec

        return transaction_spec(model_name)

    def generate(self, rows: int, seed: int) -> pd.DataFrame:
        from families.transaction_anomaly.data import generate_transactions

        return generate_transactions(rows, seed)

    def infer_spec(
        self, raw: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
    ) -> DatasetSpec:
        from families.transaction_anomaly.data import infer_transaction_spec

        return infer_transaction_spec(raw, target=target, positive_label=positive_label, partial=partial, name=name)

    def conform(self, raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        from features.spec import conform

        return conform(raw, spec)

    def split(self, frame: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        import numpy as np
        from sklearn.model_selection import train_test_split

        from features.spec import LABEL_COLUMN

        if has_behaviour(spec):
            from families.transaction_anomaly.behaviour import FEATURE_NAMES, compute_offline
            from families.transaction_anomaly.data import dataset_from_spec

            feats = compute_offline(frame, dataset_from_spec(spec))
            frame = frame.drop(columns=[c for c in FEATURE_NAMES if c in frame.columns]).join(feats)
        time_column = spec.roles.get("timestamp")
        if time_column is not None and time_column in frame.columns:  # the latest rows are the holdout
            ts = frame[time_column].to_numpy()
            order = np.lexsort((np.arange(len(frame)), ts))
            cut = len(frame) - max(1, int(round(len(frame) * TEST_FRACTION)))
            return frame.iloc[np.sort(order[:cut])], frame.iloc[np.sort(order[cut:])]
        labels = frame[LABEL_COLUMN] if LABEL_COLUMN in frame.columns and frame[LABEL_COLUMN].nunique() > 1 else None
        train_df, test_df = train_test_split(frame, test_size=TEST_FRACTION, random_state=seed, stratify=labels)
        return train_df, test_df

    # --- train / evaluate -------------------------------------------------------------
    def params(self, seed: int, overrides: Mapping[str, object] | None) -> FamilyParams:
        return typed_params(AnomalyParams(random_state=seed), self.name, overrides)

    def train(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> IsolationForestDetector:
        from families.transaction_anomaly import fit as anomaly

        assert isinstance(params, AnomalyParams)
        return anomaly.train(model_inputs(frame, spec), params.as_dict())  # labels never reach the model

    def evaluate(self, model: IsolationForestDetector, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
        from families.transaction_anomaly import fit as anomaly
        from features.spec import LABEL_COLUMN
        from ledgerline.metrics import wilson_interval

        y = frame[LABEL_COLUMN].to_numpy() if LABEL_COLUMN in frame.columns else None
        pattern = spec.roles.get("pattern")
        patterns = frame[pattern] if pattern and pattern in frame.columns else None
        metrics = anomaly.evaluate(model, model_inputs(frame, spec), y, patterns)
        budget, n = metrics["alert_budget"], len(frame)
        low, high = wilson_interval(metrics["alert_rate"], n)
        metrics["alert_rate_ratio"] = metrics["alert_rate"] / budget
        # the holdout's alert rate with its sampling noise (99 % interval), as multiples of the budget:
        # a small holdout's 8 expected alerts may well be 2 or 16 without anything being wrong
        metrics["alert_rate_ratio_low"] = low / budget
        metrics["alert_rate_ratio_high"] = high / budget
        return metrics

    def report(
        self, model: IsolationForestDetector, frame: pd.DataFrame, spec: DatasetSpec, metrics: Mapping[str, float]
    ) -> Report:
        from families.transaction_anomaly import fit as anomaly
        from features.spec import LABEL_COLUMN

        scores = model.score(model_inputs(frame, spec))
        y = frame[LABEL_COLUMN].to_numpy() if LABEL_COLUMN in frame.columns else None
        threshold = float(model.threshold_)
        figures = {"plots/score_distribution.png": anomaly.score_distribution_figure(scores, threshold, y)}
        if y is not None and 0 < int(y.sum()) < len(y):
            figures["plots/precision_recall.png"] = anomaly.precision_recall_figure(scores, y, threshold)
        per_pattern = {k.removeprefix("recall_"): v for k, v in metrics.items() if k.startswith("recall_") and k != "recall_at_budget"}
        documents: dict[str, dict[str, object]] = {"evaluation/threshold.json": {
            "threshold": threshold,
            "alert_budget": float(model.alert_budget),
            "inputs": list(model.columns_),
            "behavioural_features": has_behaviour(spec),
        }}
        if per_pattern:
            documents["evaluation/recall_per_pattern.json"] = dict(per_pattern)
        return Report(figures=figures, documents=documents)

    # --- gate ---------------------------------------------------------------------------
    def gate_policy(self, settings: Settings) -> GatePolicy:
        from families.transaction_anomaly.data import ALERT_RATE_BAND

        return GatePolicy(
            (
                # the interval of the holdout's alert rate must reach into the band around the budget
                MetricRule("alert_rate_ratio_low", "lower", bound=ALERT_RATE_BAND[1]),
                MetricRule("alert_rate_ratio_high", "higher", bound=ALERT_RATE_BAND[0]),
                MetricRule("recall_at_budget", "higher", tolerance=0.05, required=False),
                MetricRule("pr_auc", "higher", tolerance=0.05, required=False),
            )
        )

    # --- model I/O ------------------------------------------------------------------------
    def log_model(self, model: IsolationForestDetector, frame: pd.DataFrame, spec: DatasetSpec) -> str:
        example = model_inputs(frame, spec).head(5)
        packages = ("mlflow", "scikit-learn", "pandas", "numpy", "skops", "pyarrow")
        return log_skops_model(model, example, packages, SKOPS_TRUSTED_TYPES, __file__, predict_fn="score")

    def load_model(self, model_uri: str) -> IsolationForestDetector:
        from families.transaction_anomaly.model import IsolationForestDetector
        from features.model_io import load_model_as

        return load_model_as(model_uri, IsolationForestDetector)

    # --- promotion ------------------------------------------------------------------------------
    def on_champion(self, settings: Settings, model_name: str, version: str, run_id: str | None,
                    progress: Callable[[str], None]) -> str | None:
        """Fill the customer profiles of the online store from the version's training window
        (:mod:`families.transaction_anomaly.profile_fill`); a note for the ledger either way."""
        from families.transaction_anomaly.profile_fill import on_champion_note

        return on_champion_note(settings, model_name, version, run_id, progress)

    # --- model card -------------------------------------------------------------------------
    def card_parts(self, model: IsolationForestDetector, frame: pd.DataFrame, spec: DatasetSpec, settings: Settings) -> CardParts:
        import numpy as np
        from sklearn.metrics import average_precision_score, roc_auc_score

        from features.spec import LABEL_COLUMN
        from training import cards

        scores = np.asarray(model.score(model_inputs(frame, spec)))
        threshold = float(model.threshold_)
        alert = scores >= threshold
        y = frame[LABEL_COLUMN].to_numpy().astype(int) if LABEL_COLUMN in frame.columns else None

        def metrics_of(idx: np.ndarray) -> dict[str, float]:
            out = {"alert_rate": float(alert[idx].mean())}
            if y is not None:
                yy, aa = y[idx], alert[idx]
                out["precision_at_budget"] = float((aa & (yy == 1)).sum() / aa.sum()) if aa.any() else 0.0
                out["recall_at_budget"] = float((aa & (yy == 1)).sum() / yy.sum()) if yy.any() else float("nan")
                if 0 < yy.sum() < len(yy):
                    out["roc_auc"] = float(roc_auc_score(yy, scores[idx]))
                    out["pr_auc"] = float(average_precision_score(yy, scores[idx]))
            return out

        budget = float(model.alert_budget)
        return cards.CardParts(
            intended_use=(
                "Scores card transactions by how unusual they are for the customer (Isolation Forest on point-in-time "
                f"behavioural features) and flags the top {budget:.2%} (the alert budget) for an analyst's review, with "
                "reasons against the customer's typical values. An aid to prioritise reviews, not an automatic block."
            ),
            metrics=cards.bootstrap(len(scores), metrics_of, seed=7),
            limitations=[
                "unsupervised: it finds the unusual, which is not always fraud; labels (when present) only evaluate it",
                "customers with little history get profile-free features and weaker reasons",
                "the alert threshold is calibrated on the training period's score distribution; a shift moves the alert rate",
                *(["no labels in the holdout: precision and recall are not measured"] if y is None else []),
            ],
            watched=[
                "drift of the behavioural features and of the anomaly score (PSI, Evidently)",
                "the live alert rate against the budget and, with analyst verdicts, precision and recall at the budget",
            ],
            model_facts={"algorithm": "Isolation Forest", "alert threshold": f"{threshold:.4f} (score at the training alert budget {budget:g})"},
        )


FAMILY = TransactionAnomalyFamily()
