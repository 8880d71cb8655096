"""Asset-valuation monitoring: the monitored score is the prediction (the answer's ``prediction`` where the log
kept no score, as for batch jobs); feedback is the realised value
(a sale price), decoded by the numeric codec.

Live metrics of the predictions with a realised value: MdAPE (median absolute percentage error) and
the coverage of the intervals served (the share of realised values inside ``[prediction_lower,
prediction_upper]``, read from the logged answers), each against the champion's offline test metric
(``test_mdape``, ``test_coverage``) with a tolerance (``LEDGERLINE_ASSET_VALUATION_MDAPE_TOLERANCE``,
``..._COVERAGE_TOLERANCE``, or the monitoring tolerances). Drift of the inputs is the platform's (the
numeric and categorical inputs; the sale date is not a drift input: it moves by nature).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from families.asset_valuation.settings import AssetValuationSettings
from ledgerline.families import MetricRule
from monitoring.family import InsufficientLabels, MonitoringFamilyBase

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from families.asset_valuation.model import AssetValuationModel
    from features.spec import DatasetSpec
    from monitoring.settings import MonitoringSettings


def _bound(o: Mapping[str, object], key: str) -> float:
    value = o.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


class AssetValuationMonitoring(MonitoringFamilyBase["AssetValuationModel"]):
    name = "asset-valuation"
    output_fields = ("prediction", "prediction_lower", "prediction_upper")

    def load_model(self, model_uri: str) -> AssetValuationModel:
        from families.asset_valuation.pyfunc import load_asset_model

        return load_asset_model(model_uri)

    def monitored_columns(self, spec: DatasetSpec) -> tuple[list[str], list[str]]:
        return list(spec.numeric), list(spec.categorical)

    def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        import numpy as np

        return np.asarray(self.load_model(model_uri).predict(frame), dtype=np.float64)

    def performance_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        own = AssetValuationSettings.of(mon.families)
        tol = {"mdape": own.mdape_tolerance, "coverage": own.coverage_tolerance, **mon.tolerances}
        return (
            MetricRule("mdape", "lower", tolerance=tol["mdape"]),
            MetricRule("coverage", "higher", tolerance=tol["coverage"], required=False),
        )

    def live_metrics(
        self, y: np.ndarray, scores: np.ndarray, outputs: Sequence[Mapping[str, object]] | None
    ) -> dict[str, float]:
        """MdAPE, MAPE and MAE of the predictions against realised values, and the served intervals' coverage
        (when the answers are at hand); rows whose realised value is 0 have no percentage error."""
        import numpy as np

        y = np.asarray(y, dtype=np.float64)
        p = np.asarray(scores, dtype=np.float64).copy()
        if outputs is not None and len(outputs) == len(y):  # batch jobs log no score: the answer holds the prediction
            logged = np.array([_bound(o, "prediction") for o in outputs])
            p = np.where(np.isfinite(p), p, logged) if len(p) == len(y) else logged
        ok = np.isfinite(y) & np.isfinite(p)
        nz = ok & (y != 0)
        if not nz.any():
            raise InsufficientLabels(f"none of the {len(y)} realised values is a non-zero number with a prediction")
        ape = np.abs(p[nz] - y[nz]) / np.abs(y[nz])
        out = {"mdape": float(np.median(ape)), "mape": float(np.mean(ape)), "mae": float(np.mean(np.abs(p[ok] - y[ok]))),
               "realised": float(ok.sum())}
        if outputs is not None and len(outputs) == len(y):
            lo = np.array([_bound(o, "prediction_lower") for o in outputs])
            hi = np.array([_bound(o, "prediction_upper") for o in outputs])
            has = ok & np.isfinite(lo) & np.isfinite(hi)
            if has.any():
                out["coverage"] = float(np.mean((y[has] >= lo[has]) & (y[has] <= hi[has])))
        return out


FAMILY = AssetValuationMonitoring()
