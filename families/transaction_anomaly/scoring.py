"""One transaction in, one anomaly answer out: behavioural features, the compiled forest, reasons.

``answer`` fields: ``anomaly_score`` in (0, 1] (higher is more anomalous; see
families/transaction_anomaly/iforest_compiled.py for the mapping), ``is_anomaly`` (score at or above the
threshold calibrated to the alert budget), ``risk_level`` (``high`` = an alert,
``medium`` = within the top 4x budget of training scores, else ``low``), ``reasons``
(families/transaction_anomaly/behaviour.py ``reasons``), ``profile_available`` and ``cold_start``.

**While the profile store is unreachable** (``profile_available`` false) the behavioural forest would see
a customer without history, and a 2,500 EUR payment of a customer who typically spends 40 would look like
any newcomer's: no alert. Those answers come instead from the model's profile-free forest
(``detector.profile_free_``, trained beside it on amount, refund and hour and calibrated to the same
alert budget), so an outage can lower recall on the behavioural patterns but cannot hide an unusual
amount. A model version trained before that forest existed has none: its answers during an outage are
refused (:class:`ProfileStoreUnavailable`, a 503) rather than guessed. ``outage="fail"`` refuses them
for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from families.transaction_anomaly.behaviour import (
    FEATURE_NAMES,
    InvalidTransaction,
    Profile,
    Txn,
    parse_transaction,
    reasons,
)
from families.transaction_anomaly.data import DEFAULT_DATASET, TransactionDataset
from families.transaction_anomaly.iforest_compiled import CompiledForest, compile_forest
from families.transaction_anomaly.profiles import MAX_CUSTOMER_ID_LEN, ProfileStore, ProfileStoreUnavailable

#: What an answer does while the profile store is down: ``profile-free`` scores on the transaction alone
#: (the model's profile-free forest), ``fail`` refuses (503).
OUTAGE_MODES = ("profile-free", "fail")


@dataclass(frozen=True)
class Levels:
    """A compiled forest with its columns and thresholds."""

    forest: CompiledForest
    columns: tuple[str, ...]
    threshold: float
    medium_threshold: float

    @classmethod
    def of(cls, detector: Any) -> Levels:
        return cls(compile_forest(detector.iforest_), tuple(detector.columns_), float(detector.threshold_),
                   float(detector.medium_threshold_))

    def level(self, score: float) -> str:
        return "high" if score >= self.threshold else "medium" if score >= self.medium_threshold else "low"


@dataclass(frozen=True)
class AnomalyScorer:
    forest: CompiledForest
    columns: tuple[str, ...]  # behavioural features in the model's column order
    threshold: float
    medium_threshold: float
    top_k: int = 3
    outage: Levels | None = None  # the profile-free forest; None: answers are refused while profiles are away

    @classmethod
    def from_detector(cls, detector: Any, top_k: int = 3, outage: str = "profile-free") -> AnomalyScorer:
        """From a fitted families.transaction_anomaly.fit.IsolationForestDetector trained on behavioural features."""
        if outage not in OUTAGE_MODES:
            raise ValueError(f"outage must be one of {OUTAGE_MODES}, not {outage!r}")
        columns = tuple(detector.columns_)
        unknown = [c for c in columns if c not in FEATURE_NAMES]
        if unknown or detector.codes_:
            raise ValueError(f"the model was not trained on behavioural features only (extra columns {unknown}); "
                             "score it with detector.encode_record instead")
        free = getattr(detector, "profile_free_", None)
        return cls(compile_forest(detector.iforest_), columns, float(detector.threshold_),
                   float(detector.medium_threshold_), top_k,
                   Levels.of(free) if free is not None and outage == "profile-free" else None)

    def _without_profile(self, feats: dict[str, float]) -> tuple[float, str]:
        """The profile-free forest's score and level; ProfileStoreUnavailable when there is none to use."""
        if self.outage is None:
            raise ProfileStoreUnavailable(
                "the customer profile store is unreachable and this model version cannot score without it "
                "(answers are refused rather than guessed; it retries shortly). A version trained now also "
                "scores on the transaction alone during an outage"
            )
        x = np.fromiter((feats[c] for c in self.outage.columns), dtype=np.float64, count=len(self.outage.columns))
        score = self.outage.forest.anomaly_score_one(x)
        return score, self.outage.level(score)

    def _levels(self, score: float) -> str:
        return "high" if score >= self.threshold else "medium" if score >= self.medium_threshold else "low"

    def explain(self, profile: Profile, txn: Txn, feats: dict[str, float], profile_available: bool) -> dict[str, Any]:
        """An answer's parts that need the profile (reasons, flags); :meth:`finish` adds the scores."""
        return {
            "reasons": reasons(profile, txn, feats, self.top_k, profile_available),
            "profile_available": profile_available,
            "cold_start": profile_available and profile.n == 0,
        }

    def finish(self, parts: list[dict[str, Any]], feats: list[dict[str, float]]) -> list[dict[str, Any]]:
        """Whole answers for a batch: the forest scores every row at once."""
        if not parts:
            return []
        X = np.array([[f[c] for c in self.columns] for f in feats], dtype=np.float64)
        scores = self.forest.anomaly_score(X).tolist()
        out = []
        for part, score, f in zip(parts, scores, feats, strict=True):
            if part["profile_available"]:
                level = self._levels(score)
            else:
                score, level = self._without_profile(f)
            out.append({"anomaly_score": score, "is_anomaly": level == "high", "risk_level": level, **part})
        return out

    def answer(self, profile: Profile, txn: Txn, feats: dict[str, float], profile_available: bool) -> dict[str, Any]:
        if profile_available:
            x = np.fromiter((feats[c] for c in self.columns), dtype=np.float64, count=len(self.columns))
            score = self.forest.anomaly_score_one(x)
            level = self._levels(score)
        else:
            score, level = self._without_profile(feats)
        return {
            "anomaly_score": score,
            "is_anomaly": level == "high",
            "risk_level": level,
            "reasons": reasons(profile, txn, feats, self.top_k, profile_available),
            "profile_available": profile_available,
            "cold_start": profile_available and profile.n == 0,
        }


def score_transaction(record: dict[str, Any], store: ProfileStore, scorer: AnomalyScorer,
                      dataset: TransactionDataset = DEFAULT_DATASET,
                      now: pd.Timestamp | None = None) -> dict[str, Any]:
    """Validate, score against the customer's profile and fold the transaction into it.

    Raises InvalidTransaction (a ValueError naming the field) for bad input; never for a Redis outage.
    """
    customer = record.get(dataset.customer_column)
    if not isinstance(customer, str) or not customer or len(customer) > MAX_CUSTOMER_ID_LEN:
        raise InvalidTransaction(dataset.customer_column,
                                 f"is required (a non-empty string of at most {MAX_CUSTOMER_ID_LEN} characters)")
    txn = parse_transaction(record, dataset, now=now)
    scored = store.score_and_update(customer, txn, lambda p, f, ok: scorer.answer(p, txn, f, ok))
    return {**scored.result, "features": scored.features}
