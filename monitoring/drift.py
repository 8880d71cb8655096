"""The drift verdict for one window: PSI of every feature and of the score, plus Evidently's report.

:func:`compute_drift` is pure (frames in, :class:`DriftResult` out); the job in
:mod:`monitoring.jobs` loads the frames and logs the result.

Verdict: ``drift`` when any feature's PSI reaches ``psi_drift_band`` (significant,
>= 0.25, by default), when the score's PSI does (``score_psi_counts``), or when
Evidently finds dataset drift (share of drifted columns >= ``drift_share``).
``drifted_features`` names the features by PSI; Evidently's per-column verdicts
are in the evidence beside them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from monitoring import psi as psi_mod
from monitoring.settings import MonitoringSettings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from monitoring.evidently_adapter import EvidentlyDrift

logger = logging.getLogger(__name__)

SCORE = "score"


@dataclass(frozen=True)
class FeaturePsi:
    name: str
    kind: str  # numeric | categorical | score
    psi: float
    band: str
    drifted: bool
    reference_missing: float  # share of missing values
    current_missing: float


@dataclass(frozen=True)
class DriftResult:
    status: str  # ok | drift | insufficient_data
    message: str
    reference_rows: int
    current_rows: int
    features: tuple[FeaturePsi, ...] = ()
    score: FeaturePsi | None = None
    evidently: EvidentlyDrift | None = None
    timings: dict[str, float] = field(default_factory=dict)
    evidently_error: str | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def psi(self) -> dict[str, float]:
        return {f.name: round(f.psi, 6) for f in self.features}

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what goes to the database, the decision's evidence and summary.json)."""
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted_features": self.drifted_features,
            "psi": self.psi,
            "psi_bands": {f.name: f.band for f in self.features},
            "missing_share": {
                f.name: {"reference": round(f.reference_missing, 4), "current": round(f.current_missing, 4)}
                for f in self.features
            },
        }
        if self.score is not None:
            out["score_psi"] = round(self.score.psi, 6)
            out["score_band"] = self.score.band
            out["score_drifted"] = self.score.drifted
        if self.evidently is not None:
            out["evidently"] = self.evidently.summary()
        if self.evidently_error:
            out["evidently_error"] = self.evidently_error
        if self.timings:
            out["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        return out


def _share(count: float, counts: np.ndarray) -> float:
    total = float(counts.sum())
    return float(count / total) if total else 0.0


def feature_psi(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    mon: MonitoringSettings,
) -> list[FeaturePsi]:
    """PSI and band of every feature, on all rows."""
    out: list[FeaturePsi] = []
    for name in [*numeric, *categorical]:
        ref, cur = reference[name], current[name]
        if name in numeric:
            r, c = psi_mod.numeric_histograms(ref.to_numpy(dtype="float64"), cur.to_numpy(dtype="float64"), mon.psi_bins)
            r_missing, c_missing = r[-1], c[-1]
            kind = "numeric"
        else:
            r, c, keys = psi_mod.categorical_histograms(ref, cur)
            at = keys.index(psi_mod.MISSING) if psi_mod.MISSING in keys else None
            r_missing, c_missing = (r[at], c[at]) if at is not None else (0.0, 0.0)
            kind = "categorical"
        value = psi_mod.psi_from_counts(r, c)
        b = psi_mod.band(value, mon.psi_moderate, mon.psi_significant)
        out.append(
            FeaturePsi(name, kind, value, b, psi_mod.at_least(b, mon.psi_drift_band), _share(r_missing, r), _share(c_missing, c))
        )
    return out


def score_psi(reference_scores: np.ndarray, current_scores: np.ndarray, mon: MonitoringSettings) -> FeaturePsi:
    import numpy as np

    ref = np.asarray(reference_scores, dtype=np.float64)
    cur = np.asarray(current_scores, dtype=np.float64)
    r, c = psi_mod.numeric_histograms(ref, cur, mon.psi_bins)
    value = psi_mod.psi_from_counts(r, c)
    b = psi_mod.band(value, mon.psi_moderate, mon.psi_significant)
    drifted = mon.score_psi_counts and psi_mod.at_least(b, mon.psi_drift_band)
    return FeaturePsi(SCORE, "score", value, b, drifted, _share(r[-1], r), _share(c[-1], c))


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    mon: MonitoringSettings,
    reference_scores: np.ndarray | None = None,
    current_scores: np.ndarray | None = None,
    render_html: bool = True,
) -> DriftResult:
    """Compare ``current`` (the prediction window) with ``reference`` (the training snapshot)."""
    if len(current) < mon.min_current_rows:
        return not_enough_data(len(current), mon, reference_rows=len(reference))
    if len(reference) == 0:
        return DriftResult("insufficient_data", "not enough data: the reference snapshot is empty", 0, len(current))
    from monitoring.evidently_adapter import data_drift

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    features = feature_psi(reference, current, numeric=numeric, categorical=categorical, mon=mon)
    score = None
    if reference_scores is not None and current_scores is not None:
        score = score_psi(reference_scores, current_scores, mon)
    timings["psi"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_ev, cur_ev, ev_numeric = reference, current, list(numeric)
    if score is not None:  # the score is in the report too, as a numeric column
        ref_ev = reference.assign(**{SCORE: reference_scores})
        cur_ev = current.assign(**{SCORE: current_scores})
        ev_numeric.append(SCORE)
    evidently: EvidentlyDrift | None = None
    evidently_error = None
    try:
        evidently = data_drift(
            ref_ev,
            cur_ev,
            numerical=ev_numeric,
            categorical=list(categorical),
            drift_share=mon.drift_share,
            sample_size=mon.evidently_sample_size,
            seed=mon.seed,
            render_html=render_html,
            preset=mon.evidently_preset_html,
        )
    except Exception as exc:  # the PSI verdict stands on its own; say why the report is missing
        logger.exception("Evidently failed; the drift verdict rests on PSI alone")
        evidently_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    timings["evidently"] = time.perf_counter() - t0

    drifted = [f.name for f in features if f.drifted]
    reasons = []
    if drifted:
        reasons.append(f"PSI >= {_band_floor(mon)} in {', '.join(drifted)}")
    if score is not None and score.drifted:
        reasons.append(f"score PSI {score.psi:.3f}")
    if evidently is not None and evidently.dataset_drift:
        reasons.append(
            f"Evidently dataset drift ({evidently.drifted_count} columns, share {evidently.drifted_share:.2f} "
            f">= {mon.drift_share})"
        )
    status = "drift" if reasons else "ok"
    worst = max(features, key=lambda f: f.psi if f.psi == f.psi else -1.0)
    share = f"Evidently drifted share {evidently.drifted_share:.2f}" if evidently else f"no Evidently report ({evidently_error})"
    message = "drift: " + "; ".join(reasons) if reasons else f"no drift: largest feature PSI {worst.psi:.3f} ({worst.name}), {share}"
    return DriftResult(
        status, message, len(reference), len(current), tuple(features), score, evidently, timings, evidently_error
    )


def not_enough_data(current_rows: int, mon: MonitoringSettings, *, reference_rows: int = 0) -> DriftResult:
    """The explicit no-verdict result for a window with too few predictions."""
    return DriftResult(
        "insufficient_data",
        f"not enough data: {current_rows} predictions in the window, at least {mon.min_current_rows} needed "
        f"(LEDGERLINE_MONITORING_MIN_CURRENT_ROWS); no drift verdict",
        reference_rows,
        current_rows,
    )


def _band_floor(mon: MonitoringSettings) -> float:
    return mon.psi_significant if mon.psi_drift_band == "significant" else mon.psi_moderate
