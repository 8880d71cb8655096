"""Transaction categorisation answers behind the serving plug-in interface, and the correction rules.

An answer names the category, its probability, the model's top 3 with probabilities and the
n-grams (and fields) that drove the choice; below ``min_confidence`` (``LEDGERLINE_TRANSACTION_CATEGORY_MIN_CONFIDENCE``) it abstains
(``category: null``, the candidates stay). A description without letters (only digits) has no
merchant to recognise: the answer abstains and says so. An empty description is a 422.

Corrections. Feedback for a categorisation prediction is the correct category. When it differs
from the answer (or the merchant already has a rule), it becomes a rule keyed on the merchant's
normalised description (:mod:`families.transaction_category.corrections`, latest correction wins). Postgres (the app
database) is the source of truth; each worker keeps the rules in memory and a background thread
asks the database every ``rules_poll_seconds`` (0.5 s) for rules with a newer version
than it holds: one indexed query per worker and interval, no extra service, and a worker that
missed a poll (database away) catches up on the next one. The worker that took the feedback
applies the rule at once. The next line of that merchant, in any worker, answers with the
corrected category and ``source: "correction"``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from families.transaction_category.settings import TransactionCategorySettings
from serving.errors import InvalidRecords
from serving.family import Built, PredictionBase, Record, ServingContext, ServingFamilyBase, records_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sqlalchemy.engine import Engine

    from families.transaction_category.corrections import Rule
    from families.transaction_category.model import CategoryModel
    from features.labels import OutcomeCodec
    from features.spec import DatasetSpec
    from serving.schema import Column

logger = logging.getLogger(__name__)
TOP_K = 3
EXPLAIN_K = 5


class CategoryCandidate(BaseModel):
    category: str
    probability: float


class DrivingFeature(BaseModel):
    feature: str = Field(description="an n-gram of the normalised description (a whole word, or 3-5 characters "
                                     "with spaces marking word edges), the processor, or a field's value")
    weight: float = Field(description="how much it raised the chosen category's score")


class CorrectionInfo(BaseModel):
    merchant: str = Field(description="the normalised description the rule is keyed on")
    corrections: int = Field(description="corrections of this merchant so far (the latest one wins)")
    updated_at: datetime


class CategoryPrediction(PredictionBase):
    category: str | None = Field(description="the category; null when the answer abstains")
    probability: float | None = Field(
        description="the model's calibrated probability of `category` (also when a correction chose it); null when abstaining"
    )
    abstained: bool = Field(description="true: no candidate reached the configured confidence")
    source: Literal["model", "correction"] = Field(description="'correction': a user's correction of this merchant decided")
    alternatives: list[CategoryCandidate] = Field(description="the model's top 3 categories, most probable first")
    explanation: list[DrivingFeature] = Field(description="what drove the model's first choice, strongest first")
    model_category: str = Field(description="the model's most probable category")
    merchant: str = Field(description="the normalised description (what a correction is keyed on)")
    correction: CorrectionInfo | None = None
    note: str | None = None


class RuleCache:
    """The correction rules of one model in this worker, kept current from the database."""

    def __init__(self, engine: Engine | None, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name
        self.rules: dict[str, Rule] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.polls = 0
        self.errors = 0

    def apply(self, rules: Sequence[Rule]) -> None:
        with self.lock:
            for r in rules:
                if r.version <= self.version and r.merchant_key in self.rules and self.rules[r.merchant_key].version >= r.version:
                    continue
                if r.active:
                    self.rules[r.merchant_key] = r
                else:
                    self.rules.pop(r.merchant_key, None)
                self.version = max(self.version, r.version)

    def refresh(self) -> None:
        from families.transaction_category.corrections import rules_since

        if self.engine is None:
            return
        try:
            changed = rules_since(self.engine, self.model_name, self.version)
        except Exception as exc:  # the database away: keep serving the rules held
            self.errors += 1
            if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                logger.warning("correction rules of %s: cannot refresh (%s); serving the %d rules held",
                               self.model_name, str(exc).splitlines()[0][:200], len(self.rules))
            return
        self.polls += 1
        if changed:
            self.apply(changed)

    def get(self, key: str) -> Rule | None:
        return self.rules.get(key) if key else None

    def stats(self) -> dict[str, float]:
        return {"category_rules": float(len(self.rules)), "category_rules_version": float(self.version),
                "category_rules_refresh_errors": float(self.errors)}


def _poll(ref: weakref.ReferenceType[RuleCache], every: float) -> None:
    """Refresh the cache every ``every`` seconds while it is alive (a replaced model's cache is dropped)."""
    while True:
        time.sleep(every)
        cache = ref()
        if cache is None:
            return
        cache.refresh()
        del cache


def _app_db_url(ctx: ServingContext) -> str:
    """The app database the serving app logs to (the loader passes it); the rules live there too."""
    url = ctx.options.get("app_db_url") or ctx.settings.app_db_url
    if not url:
        raise ValueError("no app database URL for the correction rules")
    return str(url)


class TransactionCategoryServing(ServingFamilyBase["CategoryModel"]):
    """The model is the fitted text classifier; the score is the first choice's probability, in [0, 1];
    feedback is the correct category (a correction becomes a rule at once)."""

    name = "transaction-category"
    answer_model = CategoryPrediction
    answer_columns = ("category", "category_probability", "top3", "abstained")
    score_column = "category_probability"

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        from serving.schema import Column, columns_from

        if spec is None:
            return columns_from(signature_inputs, None)
        cols: list[Column] = []
        for c in spec.columns:
            nullable = c.max_null_fraction > 0 and c.name != spec.roles.get("text")
            if c.kind == "numeric":
                lo = c.min if c.min is not None else -1e12
                hi = c.max if c.max is not None else 1e12
                cols.append(Column(c.name, "numeric", nullable, float(lo), float(hi)))
            else:
                cols.append(Column(c.name, "categorical", nullable, values=c.values))
        if spec.id_column:
            cols.append(Column(spec.id_column, "categorical", True))  # optional in spirit: passed through to the log
        return cols

    def build(self, model: CategoryModel, ctx: ServingContext) -> Built:
        import numpy as np

        from families.transaction_category.corrections import record_correction, rules_since
        from families.transaction_category.data import merchant_key, text_features
        from ledgerline import db

        m = model
        text_col = m.text_column_
        names = m.feature_names()
        coef_t = np.ascontiguousarray(m.coef_.T)  # features x classes: a row's scores are one small product
        intercept = np.asarray(m.intercept_, dtype=np.float64)
        classes = list(m.classes_)
        own = TransactionCategorySettings.of(ctx.settings.families)
        threshold = float(own.min_confidence)
        engine: Engine | None
        try:
            engine = db.engine_for(_app_db_url(ctx))
        except Exception as exc:
            logger.warning("correction rules of %s: app database unreachable at load (%s); answering without them",
                           ctx.model_name, exc)
            engine = None
        cache = RuleCache(engine, ctx.model_name)
        cache.refresh()
        threading.Thread(target=_poll, args=(weakref.ref(cache), own.rules_poll_seconds),
                         name=f"category-rules-{ctx.model_name}", daemon=True).start()

        def run(records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]:
            many = len(records) > 1
            for i, rec in enumerate(records):
                text = rec.get(text_col)
                if not isinstance(text, str) or not text.strip():
                    where = f"body.{i}.{text_col}" if many else f"body.{text_col}"
                    raise InvalidRecords(f"{where}: the description is empty; send the statement line text",
                                         [{"field": where, "message": "must not be empty", "type": "value_error"}])
            keys = [merchant_key(rec.get(text_col)) for rec in records]  # normalised once: key, n-grams, checks
            rows = m.encode_rows(records, [text_features(rec.get(text_col), k) for rec, k in zip(records, keys, strict=True)])
            S = np.empty((len(rows), len(classes)))
            for i, (cols, vals) in enumerate(rows):
                S[i] = vals @ coef_t[cols]
            P = m.proba_from_scores(S + intercept)
            answers: list[dict[str, object]] = []
            for i in range(len(records)):
                p = P[i]
                order = np.argsort(-p)[:TOP_K]
                best = int(order[0])
                key = keys[i]
                rule = cache.get(key)
                alternatives = [{"category": classes[int(j)], "probability": round(float(p[j]), 6)} for j in order]
                cols, vals = rows[i]
                contrib = vals * coef_t[cols, best]
                top = np.argsort(-contrib)[:EXPLAIN_K]
                explanation = [{"feature": names[int(cols[j])], "weight": round(float(contrib[j]), 4)}
                               for j in top if contrib[j] > 0] if explain else []
                answer: dict[str, object] = {
                    "category": classes[best], "probability": round(float(p[best]), 6), "abstained": False,
                    "source": "model", "alternatives": alternatives, "explanation": explanation,
                    "model_category": classes[best], "merchant": key, "correction": None, "note": None,
                }
                if rule is not None and rule.category in classes:
                    answer.update({
                        "category": rule.category, "probability": round(float(p[classes.index(rule.category)]), 6),
                        "source": "correction",
                        "correction": {"merchant": key, "corrections": rule.corrections, "updated_at": rule.updated_at},
                    })
                elif not key:
                    answer.update({"category": None, "probability": None, "abstained": True,
                                   "note": "the description has no letters, so no merchant to recognise"})
                elif float(p[best]) < threshold:
                    answer.update({"category": None, "probability": None, "abstained": True})
                answers.append(answer)
            return answers, P.max(axis=1)

        def on_feedback(prediction_id: str, label: str) -> None:
            """A category from a user: a correction becomes (or updates) the merchant's rule at once."""
            if engine is None:
                return
            import sqlalchemy as sa

            p = db.predictions.c
            with engine.connect() as conn:
                row = conn.execute(sa.select(p.inputs, p.outputs).where(p.prediction_id == prediction_id)).first()
            if row is None:
                return
            inputs = row.inputs if isinstance(row.inputs, dict) else __import__("json").loads(row.inputs)
            outputs = row.outputs if isinstance(row.outputs, dict) else __import__("json").loads(row.outputs)
            key = merchant_key(inputs.get(text_col))
            if not key or (label == outputs.get("category") and cache.get(key) is None):
                return  # a confirmation of the answer, no rule to change
            rule = record_correction(engine, ctx.model_name, key, label, prediction_id)
            cache.apply([rule, *rules_since(engine, ctx.model_name, cache.version)])
            logger.info("correction of %s: '%s' is %s (rule v%d, %d corrections)", ctx.model_name, key, label,
                        rule.version, rule.corrections)

        details: dict[str, object] = {
            "classes": classes,
            "min_confidence": threshold,
            "candidate": getattr(m, "candidate_", None),
            "temperature": float(m.temperature_),
            "ngrams": len(m.vocabulary_),
            "inputs": list(m.input_columns),
            "rules_poll_seconds": own.rules_poll_seconds,
        }
        return Built(run, details, status=cache.stats, on_feedback=on_feedback)

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        given = answer.get("alternatives")
        alts: list[Any] = list(given) if isinstance(given, list) else []
        top = [str(a["category"]) for a in alts]
        return {
            "category": answer.get("model_category"),
            "category_probability": alts[0]["probability"] if alts else None,
            "top3": "|".join(top),
            "abstained": bool(answer.get("abstained")),
        }

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        if spec is None:
            return None
        text = spec.roles.get("text")
        out: dict[str, object] = {}
        for c in columns:
            if c.name == text:
                out[c.name] = "SQ *BLUE BOTTLE COFFEE 0421 OAKLAND CA"
            elif c.name == spec.id_column:
                out[c.name] = "t-000001"
            elif c.kind == "numeric":
                lo, hi = c.min if c.min is not None else 0.0, c.max if c.max is not None else 0.0
                out[c.name] = 6.5 if lo <= 6.5 <= hi else lo
            elif c.values:
                out[c.name] = next((v for v in ("USD", "US") if v in c.values), c.values[0])
            else:
                out[c.name] = "x"
        return out

    def label_codec(self, spec: DatasetSpec | None) -> OutcomeCodec:
        from features.spec import outcome_codec_of

        return outcome_codec_of(spec)

    def score_frame(self, model: CategoryModel, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        """Offline answers from the model alone (no correction rules): the most probable category also where
        the online answer would abstain, its probability, the top 3 joined by ``|``, and whether it would abstain."""
        import numpy as np
        import pandas as pd

        from families.transaction_category.data import normalise

        m = model
        classes = np.asarray(m.classes_, dtype=object)
        records = records_of(frame)
        P = m.proba_from_scores(m.scores(m.transform_records(records)))
        order = np.argsort(-P, axis=1)[:, :TOP_K]
        best = P[np.arange(len(P)), order[:, 0]]
        no_text = np.fromiter((not normalise(r.get(m.text_column_)) for r in records), dtype=bool, count=len(records))
        return pd.DataFrame({
            "category": classes[order[:, 0]],
            "category_probability": np.round(best, 6),
            "top3": ["|".join(row) for row in classes[order].tolist()],
            "abstained": (best < float(TransactionCategorySettings.of(ctx.settings.families).min_confidence)) | no_text,
        }, index=frame.index, columns=list(self.answer_columns))


FAMILY = TransactionCategoryServing()
