"""Transaction anomaly answers behind the serving plug-in interface.

A request is the raw transaction (the spec's columns, optionally its id). With behavioural
features, each transaction is scored against its customer's profile in the profile store
(Redis, :mod:`families.transaction_anomaly.profiles`) through the compiled forest and folded into the profile in
one atomic step; the answer says when the store was unreachable (profile-free features) or
the customer is new. Without customer and time columns, the forest scores the columns given.

A batch is validated whole before any profile changes: a bad record is a 422 naming the
field and leaves every profile as it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from families.transaction_anomaly.settings import TransactionAnomalySettings
from serving.errors import InvalidRecords
from serving.family import Built, PredictionBase, Record, ServingContext, ServingFamilyBase, records_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from families.transaction_anomaly.data import TransactionDataset
    from families.transaction_anomaly.model import IsolationForestDetector
    from families.transaction_anomaly.profiles import ProfileStore
    from features.labels import LabelCodec
    from features.spec import DatasetSpec
    from serving.schema import Column


class AnomalyReason(BaseModel):
    feature: str
    value: float | str | bool | None | list[str]
    typical: float | str | None | list[str] = Field(description="the customer's typical value (or the training median)")
    score: float = Field(description="how unusual, z-like; larger is more unusual")
    text: str


class AnomalyPrediction(PredictionBase):
    anomaly_score: float = Field(description="in (0, 1]; higher is more anomalous")
    is_anomaly: bool = Field(description="at or above the threshold calibrated to the alert budget")
    risk_level: Literal["high", "medium", "low"]
    reasons: list[AnomalyReason] = Field(description="what made the transaction unusual, most unusual first")
    profile_available: bool = Field(description="false: the profile store was unreachable; scored without history")
    cold_start: bool = Field(description="no earlier transaction of this customer was known")
    features: dict[str, float] = Field(description="the behavioural features the model saw")


class TransactionAnomalyServing(ServingFamilyBase["IsolationForestDetector"]):
    """The model is the fitted detector; the score is the anomaly score in (0, 1]; feedback is an analyst's verdict."""

    name = "transaction-anomaly"
    answer_model = AnomalyPrediction
    answer_columns = ("anomaly_score", "is_anomaly", "risk_level", "reasons")
    stateful = True  # every answer folds the transaction into its customer's profile

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        from serving.schema import Column, columns_from

        if spec is None:  # no spec: the model's own inputs (what `mlflow models serve` takes)
            return columns_from(signature_inputs, None)
        cols: list[Column] = []
        for c in spec.columns:
            nullable = c.max_null_fraction > 0
            if c.kind == "numeric":
                lo = c.min if c.min is not None else -1e12
                hi = c.max if c.max is not None else 1e12
                cols.append(Column(c.name, "numeric", nullable, float(lo), float(hi)))
            elif c.kind == "datetime":
                cols.append(Column(c.name, "categorical", nullable))  # ISO 8601 text, parsed by the predictor
            else:
                cols.append(Column(c.name, "categorical", nullable, values=c.values))
        if spec.id_column:
            cols.append(Column(spec.id_column, "categorical", True))  # passed through to the log
        return cols

    def build(self, model: IsolationForestDetector, ctx: ServingContext) -> Built:
        from families.transaction_anomaly.data import dataset_from_spec, has_behaviour_roles

        spec = ctx.spec
        if spec is not None and has_behaviour_roles(spec):
            return _behavioural(model, ctx, dataset_from_spec(spec))
        return _plain(model, ctx)

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        reasons = answer.get("reasons") or []
        return {
            "anomaly_score": answer["anomaly_score"],
            "is_anomaly": answer["is_anomaly"],
            "risk_level": answer["risk_level"],
            "reasons": "; ".join(str(r["text"]) for r in reasons if isinstance(r, Mapping)) if isinstance(reasons, list) else "",
        }

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        if spec is None:
            return None
        roles = {column: role for role, column in spec.roles.items()}
        out: dict[str, object] = {}
        for c in columns:
            role = roles.get(c.name)
            if c.name == spec.id_column:
                out[c.name] = "t-000001"
            elif role == "timestamp":
                out[c.name] = "2026-03-01T14:05:00Z"
            elif role == "amount":
                out[c.name] = 42.5
            elif role == "customer":
                out[c.name] = "c-000001"
            elif c.kind == "numeric":
                lo, hi = c.min if c.min is not None else 0.0, c.max if c.max is not None else 0.0
                out[c.name] = 0.0 if lo <= 0.0 <= hi else lo
            elif c.values:
                out[c.name] = "EUR" if role == "currency" and "EUR" in c.values else c.values[0]
            elif c.kind == "boolean":
                out[c.name] = False
            else:
                out[c.name] = {"country": "DE", "channel": "pos", "device": "d-1", "merchant": "m-1"}.get(role or "", "x")
        return out

    def label_codec(self, spec: DatasetSpec | None) -> LabelCodec:
        """An analyst's verdict: ``fraud`` / ``legitimate``, or the dataset's own labels (e.g. 1/0)."""
        from features.spec import label_codec_of

        return label_codec_of(spec).with_aliases(positive=("fraud",), negative=("legitimate",))

    def score_frame(self, model: IsolationForestDetector, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        """Offline answers for a whole file: point-in-time behavioural features within the file.

        Rows are replayed in time order (ties in file order) through ``features``/``update`` on
        profiles kept in memory for this call only, as ``families.transaction_anomaly.behaviour.compute_offline`` does:
        a row sees its customer's earlier rows of the file and nothing later; the online profile
        store is never read or written. Without customer and time columns, each row is scored alone.
        """
        import pandas as pd

        from families.transaction_anomaly.data import dataset_from_spec, has_behaviour_roles

        spec = ctx.spec
        if spec is not None and has_behaviour_roles(spec):
            answers = _offline_behavioural(model, ctx, dataset_from_spec(spec), frame)
        else:
            answers, _ = _plain(model, ctx).predictor(records_of(frame))
        return pd.DataFrame([self.flatten(a) for a in answers], index=frame.index, columns=list(self.answer_columns))


def _invalid(index: int, many: bool, field: str, message: str) -> InvalidRecords:
    where = f"body.{index}.{field}" if many else f"body.{field}"
    return InvalidRecords(f"{where}: {message}", [{"field": where, "message": message, "type": "value_error"}])


def profile_store(ctx: ServingContext) -> ProfileStore:
    """The profile store a served anomaly model uses: Redis at the configured URL, or process memory."""
    from families.transaction_anomaly.profiles import MemoryProfileStore, RedisProfileStore

    s = TransactionAnomalySettings.of(ctx.settings.families)
    if s.profile_store_url == "memory":
        return MemoryProfileStore()
    return RedisProfileStore(
        s.profile_store_url,
        prefix=s.model_prefix(ctx.model_name),
        ttl_s=s.profile_ttl_seconds,
        socket_timeout_s=s.profile_timeout_seconds,
    )


def _behavioural(model: IsolationForestDetector, ctx: ServingContext, dataset: TransactionDataset) -> Built:
    import numpy as np
    import pandas as pd

    from families.transaction_anomaly.behaviour import InvalidTransaction, parse_transaction
    from families.transaction_anomaly.profiles import MAX_CUSTOMER_ID_LEN, ProfileStoreError, ProfileStoreUnavailable
    from families.transaction_anomaly.scoring import AnomalyScorer
    from serving.errors import StoreUnavailable

    outage = TransactionAnomalySettings.of(ctx.settings.families).profile_outage
    scorer = AnomalyScorer.from_detector(model, top_k=ctx.settings.reason_codes or 3, outage=outage)
    store = profile_store(ctx)
    customer_col = dataset.customer_column

    def run(records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
        now = pd.Timestamp(time.time_ns(), unit="ns", tz="UTC")
        many = len(records) > 1
        parsed = []
        for i, rec in enumerate(records):  # the whole batch first: nothing changes unless all are valid
            customer = rec.get(customer_col)
            if not isinstance(customer, str) or not customer or len(customer) > MAX_CUSTOMER_ID_LEN:
                raise _invalid(i, many, customer_col, f"is required (text of 1 to {MAX_CUSTOMER_ID_LEN} characters)")
            try:
                parsed.append((customer, parse_transaction(rec, dataset, now=now)))
            except InvalidTransaction as exc:
                raise _invalid(i, many, exc.field, str(exc).removeprefix(f"{exc.field}: ")) from None
        answers: list[dict[str, object]] = []
        try:
            if len(parsed) == 1:
                customer, txn = parsed[0]
                one = store.score_and_update(customer, txn, lambda p, f, ok: scorer.answer(p, txn, f, ok))
                results, feats = [one.result], [one.features]
            else:  # one read and one write round trip for the batch; the forest scores all rows at once
                scored = store.score_many(parsed, scorer.explain)
                feats = [s.features for s in scored]
                results = scorer.finish([s.result for s in scored], feats)
        except (ProfileStoreError, ProfileStoreUnavailable) as exc:  # a profile that kept changing; no profile-free answer
            raise StoreUnavailable(f"{exc}") from exc
        for result, f in zip(results, feats, strict=True):
            answers.append({**result, "features": {k: round(v, 6) for k, v in f.items()}})
            if not explain:  # the reasons come with the profile read (cheap): only left out of the answer
                answers[-1]["reasons"] = []
        return answers, np.fromiter((a["anomaly_score"] for a in answers), dtype=np.float64, count=len(answers))

    details: dict[str, object] = {
        "behavioural_features": True,
        "threshold": scorer.threshold,
        "profile_store": "memory" if TransactionAnomalySettings.of(ctx.settings.families).profile_store_url == "memory"
        else "redis",
        "trees": len(scorer.forest.roots),
        "during_profile_outage": "scores on the transaction alone" if scorer.outage is not None else "refuses (503)",
        "inputs": list(scorer.columns),
    }
    return Built(run, details, status=store.stats)  # /metrics reads the store's gauges


def _offline_behavioural(model: IsolationForestDetector, ctx: ServingContext, dataset: TransactionDataset, frame: pd.DataFrame) -> list[dict[str, object]]:
    import pandas as pd

    from families.transaction_anomaly.behaviour import Profile, features, replay_order, transactions_from_frame, update
    from families.transaction_anomaly.scoring import AnomalyScorer

    scorer = AnomalyScorer.from_detector(model, top_k=ctx.settings.reason_codes or 3)
    ts_col = dataset.timestamp_column
    frame = frame.assign(**{ts_col: pd.to_datetime(frame[ts_col], utc=True, format="ISO8601")})  # each row's own format
    txns = transactions_from_frame(frame, dataset)
    customers = frame[dataset.customer_column].astype(str).tolist()
    profiles: dict[str, Profile] = {}
    answers: list[dict[str, object]] = [{}] * len(txns)
    for i in replay_order([t.ts_ms for t in txns]).tolist():
        p = profiles.get(customers[i])
        if p is None:
            p = profiles[customers[i]] = Profile()
        t = txns[i]
        answers[i] = scorer.answer(p, t, features(p, t), True)
        update(p, t)
    return answers


def _plain(model: IsolationForestDetector, ctx: ServingContext) -> Built:
    """A forest on the table's own columns: score each record; reasons are the numeric inputs furthest
    from their training median."""
    import numpy as np

    from families.transaction_anomaly.iforest_compiled import compile_forest

    forest = compile_forest(model.iforest_)
    threshold = float(model.threshold_)
    medium = float(model.medium_threshold_)
    medians: dict[str, float] = dict(model.fill_values_)
    top_k = ctx.settings.reason_codes or 3

    def run(records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
        answers: list[dict[str, object]] = []
        for rec in records:
            x = model.encode_record(rec)
            score = float(forest.anomaly_score_one(x))
            reasons: list[dict[str, object]] = []
            for name, med in medians.items() if explain else ():
                value = rec.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    dev = abs(float(value) - med) / (abs(med) + 1.0)
                    reasons.append({"feature": name, "value": float(value), "typical": med, "score": round(dev, 4),
                                    "text": f"{name} {value:,.2f} vs typical {med:,.2f}"})
            reasons.sort(key=lambda r: -_float(r["score"]))
            answers.append({
                "anomaly_score": score,
                "is_anomaly": score >= threshold,
                "risk_level": "high" if score >= threshold else "medium" if score >= medium else "low",
                "reasons": reasons[:top_k],
                "profile_available": False,
                "cold_start": False,
                "features": {},
            })
        return answers, np.fromiter((a["anomaly_score"] for a in answers), dtype=np.float64, count=len(answers))

    return Built(run, {"behavioural_features": False, "threshold": threshold, "inputs": list(model.columns_)})


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


FAMILY = TransactionAnomalyServing()
