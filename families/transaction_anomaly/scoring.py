"""One transaction in, one anomaly answer out: behavioural features, the compiled forest, reasons.

``answer`` fields: ``anomaly_score`` in (0, 1] (higher is more anomalous; see
families/transaction_anomaly/iforest_compiled.py for the mapping), ``is_anomaly`` (score at or above the
threshold calibrated to the alert budget), ``risk_level`` (``high`` = an alert,
``medium`` = within the top 4x budget of training scores, else ``low``), ``reasons``
(families/transaction_anomaly/behaviour.py ``reasons``), ``profile_available`` and ``cold_start``.
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
from families.transaction_anomaly.profiles import MAX_CUSTOMER_ID_LEN, ProfileStore


@dataclass(frozen=True)
class AnomalyScorer:
    forest: CompiledForest
    columns: tuple[str, ...]  # behavioural features in the model's column order
    threshold: float
    medium_threshold: float
    top_k: int = 3

    @classmethod
    def from_detector(cls, detector: Any, top_k: int = 3) -> AnomalyScorer:
        """From a fitted families.transaction_anomaly.fit.IsolationForestDetector trained on behavioural features."""
        columns = tuple(detector.columns_)
        unknown = [c for c in columns if c not in FEATURE_NAMES]
        if unknown or detector.codes_:
            raise ValueError(f"the model was not trained on behavioural features only (extra columns {unknown}); "
                             "score it with detector.encode_record instead")
        return cls(compile_forest(detector.iforest_), columns, float(detector.threshold_),
                   float(detector.medium_threshold_), top_k)

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
        for part, score in zip(parts, scores, strict=True):
            level = "high" if score >= self.threshold else "medium" if score >= self.medium_threshold else "low"
            out.append({"anomaly_score": score, "is_anomaly": score >= self.threshold, "risk_level": level, **part})
        return out

    def answer(self, profile: Profile, txn: Txn, feats: dict[str, float], profile_available: bool) -> dict[str, Any]:
        x = np.fromiter((feats[c] for c in self.columns), dtype=np.float64, count=len(self.columns))
        score = self.forest.anomaly_score_one(x)
        level = "high" if score >= self.threshold else "medium" if score >= self.medium_threshold else "low"
        return {
            "anomaly_score": score,
            "is_anomaly": score >= self.threshold,
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
