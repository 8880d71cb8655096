"""Transaction-categorisation monitoring.

* Live metrics on the lines users labelled (corrections and confirmations, decoded by the category
  codec): accuracy and macro-F1 of the model's own category (``model_category``: what the model
  said, also where a correction rule answered), against the champion's offline test metrics.
* Window checks on the recent predictions with their feedback so far: the correction rate (share
  of predictions a user corrected) must stay at or below ``max_correction_rate``; the
  number of new corrections must stay below ``retrain_corrections`` (default 50: that many
  corrections are worth a retrain); the PSI of the predicted-category mix against the champion's
  holdout mix (``test_share_<category>``) must stay below ``psi_significant``. A breach is a
  ``performance`` retrain reason whose message names it.
* Drift of the inputs: amount, currency and country (the description is free text: no PSI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from families.transaction_category.model import CategoryModel
from families.transaction_category.settings import TransactionCategorySettings
from ledgerline.families import MetricRule
from monitoring.family import WINDOW_LABEL_KEY, InsufficientLabels, MonitoringFamilyBase

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from features.spec import DatasetSpec
    from monitoring.settings import MonitoringSettings

DEFAULT_TOLERANCES = {"accuracy": 0.10, "macro_f1": 0.10}


def _model_category(o: Mapping[str, object]) -> str | None:
    value = o.get("model_category") or o.get("category")
    return None if value is None else str(value)


class TransactionCategoryMonitoring(MonitoringFamilyBase[CategoryModel]):
    name = "transaction-category"
    output_fields = ("model_category", "category")
    window_labels = True

    def monitored_columns(self, spec: DatasetSpec) -> tuple[list[str], list[str]]:
        text = spec.roles.get("text")
        return list(spec.numeric), [c for c in spec.categorical if c != text and spec.column(c).values]

    def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        import numpy as np

        model = self.load_model(model_uri)
        return np.asarray(model.predict_proba(frame), dtype=np.float64).max(axis=1)

    def performance_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        tol = {**DEFAULT_TOLERANCES, **mon.tolerances}
        return (
            MetricRule("accuracy", "higher", tolerance=tol["accuracy"]),
            MetricRule("macro_f1", "higher", tolerance=tol["macro_f1"]),
        )

    def live_metrics(
        self, y: np.ndarray, scores: np.ndarray, outputs: Sequence[Mapping[str, object]] | None
    ) -> dict[str, float]:
        import numpy as np
        from sklearn.metrics import f1_score

        if outputs is None or len(outputs) != len(y):
            raise InsufficientLabels("the answers of the labelled predictions are missing; accuracy needs them")
        truth = np.asarray([str(v) for v in y], dtype=object)
        pred = np.asarray([_model_category(o) or "" for o in outputs], dtype=object)
        labels = sorted(set(truth.tolist()))
        return {
            "accuracy": float((pred == truth).mean()),
            "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
            "labelled_corrections": float((pred != truth).sum()),
            "labelled_confirmations": float((pred == truth).sum()),
        }

    def window_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        own = TransactionCategorySettings.of(mon.families)
        return (
            MetricRule("correction_rate", "lower", bound=own.max_correction_rate),
            MetricRule("new_corrections", "lower", bound=float(own.retrain_corrections - 1)),
            MetricRule("category_psi", "lower", bound=mon.psi_significant, required=False),
        )

    def window_metrics(
        self, scores: np.ndarray, outputs: Sequence[Mapping[str, object]], baseline: Mapping[str, float]
    ) -> dict[str, float]:
        import numpy as np

        n = len(outputs)
        if n == 0:
            return {}
        corrected = 0
        for o in outputs:
            label = o.get(WINDOW_LABEL_KEY)
            if label is not None and str(label) != (o.get("category") or ""):
                corrected += 1
        out = {"correction_rate": corrected / n, "new_corrections": float(corrected), "window_predictions": float(n)}
        shares = {k.removeprefix("share_"): v for k, v in baseline.items() if k.startswith("share_")}
        if shares:
            from collections import Counter

            counts = Counter(_model_category(o) for o in outputs)
            eps = 1e-4
            expected = np.asarray([max(shares[c], eps) for c in shares])
            actual = np.asarray([max(counts.get(c, 0) / n, eps) for c in shares])
            out["category_psi"] = float(np.sum((actual - expected) * np.log(actual / expected)))
        return out


FAMILY = TransactionCategoryMonitoring()
