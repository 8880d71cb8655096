"""Credit-risk monitoring: the probability of default is the monitored score; ROC-AUC, PR-AUC and
calibration error of labelled predictions are compared with the champion's offline test metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sklearn.pipeline import Pipeline

from families.credit_risk.settings import CreditRiskSettings
from ledgerline.families import MetricRule
from monitoring.family import InsufficientLabels, MonitoringFamilyBase

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from features.spec import DatasetSpec
    from monitoring.settings import MonitoringSettings


class CreditRiskMonitoring(MonitoringFamilyBase[Pipeline]):
    name = "credit-risk"

    def monitored_columns(self, spec: DatasetSpec) -> tuple[list[str], list[str]]:
        return list(spec.numeric), list(spec.categorical)

    def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        import numpy as np

        model = self.load_model(model_uri)
        return np.asarray(model.predict_proba(frame[spec.feature_names]))[:, 1]

    def performance_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        own = CreditRiskSettings.of(mon.families)
        tol = {"roc_auc": own.roc_auc_tolerance, "pr_auc": own.pr_auc_tolerance,
               "calibration_error": own.calibration_tolerance, **mon.tolerances}
        return (
            MetricRule("roc_auc", "higher", tolerance=tol["roc_auc"]),
            MetricRule("pr_auc", "higher", tolerance=tol["pr_auc"]),
            MetricRule("calibration_error", "lower", tolerance=tol["calibration_error"]),
        )

    def live_metrics(
        self, y: np.ndarray, scores: np.ndarray, outputs: Sequence[Mapping[str, object]] | None
    ) -> dict[str, float]:
        from ledgerline.metrics import binary_metrics

        if len(y) and y.min() == y.max():
            raise InsufficientLabels(f"all {len(y)} labels are {int(y[0])}; ROC-AUC needs both outcomes")
        full = binary_metrics(y, scores)
        return {k: full[k] for k in ("roc_auc", "pr_auc", "calibration_error", "positive_rate")}


FAMILY = CreditRiskMonitoring()
