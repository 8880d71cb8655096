"""Transaction-anomaly monitoring: the anomaly score is the monitored score; analysts' verdicts
(fraud / legitimate, decoded by the label codec) give the live alert precision (and recall, when
predictions that raised no alert got verdicts too); the window's alert rate is checked against
the model's alert budget with its sampling noise, as the training gate does, without labels.

Drift is measured on the raw transaction fields the prediction log holds: numeric columns and
categorical columns, except date-times and identifier columns (the customer, device and merchant
roles: values without a domain, for which a population stability index means nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from families.transaction_anomaly.model import IsolationForestDetector
from ledgerline.families import MetricRule
from monitoring.family import InsufficientLabels, MonitoringFamilyBase

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from features.spec import DatasetSpec
    from monitoring.settings import MonitoringSettings

#: roles whose columns identify an entity: no value domain, so no drift statistic
IDENTIFIER_ROLES = ("customer", "device", "merchant")
#: default tolerances (``LEDGERLINE_MONITORING_TOLERANCES`` overrides them per metric)
DEFAULT_TOLERANCES = {"precision_at_budget": 0.10, "recall_at_budget": 0.10}
#: the answer field that says whether a prediction raised an alert
ALERT_FIELD = "is_anomaly"


def _alerted(outputs: Sequence[Mapping[str, object]]) -> np.ndarray:
    import numpy as np

    return np.fromiter((bool(o.get(ALERT_FIELD)) for o in outputs), dtype=bool, count=len(outputs))


class TransactionAnomalyMonitoring(MonitoringFamilyBase[IsolationForestDetector]):
    name = "transaction-anomaly"
    output_fields = (ALERT_FIELD,)

    def monitored_columns(self, spec: DatasetSpec) -> tuple[list[str], list[str]]:
        identifiers = {spec.roles[r] for r in IDENTIFIER_ROLES if r in spec.roles}
        if spec.id_column:
            identifiers.add(spec.id_column)
        # an identifier column with a declared value domain is a category like any other
        categorical = [c for c in spec.categorical if c not in identifiers or spec.column(c).values]
        return [c for c in spec.numeric if c not in identifiers], categorical

    def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        import numpy as np

        from families.transaction_anomaly.data import dataset_from_spec, has_behaviour_roles

        model = self.load_model(model_uri)
        if has_behaviour_roles(spec):  # the point-in-time behavioural features serving computes from profiles
            from families.transaction_anomaly.behaviour import compute_offline

            inputs = compute_offline(frame, dataset_from_spec(spec))
        else:
            inputs = frame  # the detector picks and encodes the columns it was trained on
        return np.asarray(model.score(inputs), dtype=np.float64)

    def performance_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        tol = {**DEFAULT_TOLERANCES, **mon.tolerances}
        return (
            MetricRule("precision_at_budget", "higher", tolerance=tol["precision_at_budget"]),
            MetricRule("recall_at_budget", "higher", tolerance=tol["recall_at_budget"], required=False),
        )

    def live_metrics(
        self, y: np.ndarray, scores: np.ndarray, outputs: Sequence[Mapping[str, object]] | None
    ) -> dict[str, float]:
        import numpy as np

        if outputs is None or len(outputs) != len(y):
            raise InsufficientLabels("the answers of the labelled predictions are missing; alert precision needs them")
        alert = _alerted(outputs)
        yv = np.asarray(y).astype(bool)
        n_alerts = int(alert.sum())
        if n_alerts == 0:
            raise InsufficientLabels(f"none of the {len(yv)} labelled predictions raised an alert; alert precision needs verdicts on alerts")
        out = {
            "precision_at_budget": float((alert & yv).sum() / n_alerts),
            "labelled_alerts": float(n_alerts),
            "labelled_without_alert": float(len(yv) - n_alerts),
        }
        # recall needs verdicts on predictions that raised no alert too (e.g. chargebacks); with verdicts
        # on alerts alone every known fraud was alerted by construction, so it is not estimated
        if n_alerts < len(yv) and yv.any():
            out["recall_at_budget"] = float((alert & yv).sum() / yv.sum())
        return out

    def window_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        from families.transaction_anomaly.data import ALERT_RATE_BAND

        # the interval of the window's alert rate (99 %) must reach into the band around the budget
        return (
            MetricRule("alert_rate_ratio_low", "lower", bound=ALERT_RATE_BAND[1]),
            MetricRule("alert_rate_ratio_high", "higher", bound=ALERT_RATE_BAND[0]),
        )

    def window_metrics(
        self, scores: np.ndarray, outputs: Sequence[Mapping[str, object]], baseline: Mapping[str, float]
    ) -> dict[str, float]:
        from ledgerline.metrics import wilson_interval

        n = len(outputs)
        if n == 0:
            return {}
        rate = float(_alerted(outputs).mean())
        out = {"alert_rate": rate}
        budget = baseline.get("alert_budget")
        if budget is None or not budget > 0:
            return out  # the rules then say the budget is unknown
        low, high = wilson_interval(rate, n)
        out.update({
            "alert_budget": float(budget),
            "alert_rate_ratio": rate / budget,
            "alert_rate_ratio_low": low / budget,
            "alert_rate_ratio_high": high / budget,
        })
        return out


FAMILY = TransactionAnomalyMonitoring()
