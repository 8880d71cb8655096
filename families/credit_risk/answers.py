"""Credit-risk answers: probability of default, the decision at a threshold, top reason codes.

The fast path skips pandas and the sklearn Pipeline: the model's own
:class:`~features.transform.TabularFeatures` turns JSON records into the feature matrix
(``transform_records``, the same code that trained it), XGBoost scores it with
``inplace_predict`` and explains it with TreeSHAP contributions (log-odds), which
``aggregate_contributions`` sums back onto the input fields. Reason codes are the fields
with the largest positive contributions: what pushed the risk up.

The contributions are XGBoost's exact ``pred_contribs`` values, from tables built from the
trees at load time in a second or two (:mod:`serving.treeshap`, checked against
``pred_contribs`` before use): cell tables of groups of leaves (one lookup per group and row;
a deep tree is split into subtrees small enough to tabulate, so a depth-6 model costs about
what a depth-4 one does), else per-leaf tables whose cost grows linearly with the leaves.
Only models too large for both fall back to ``pred_contribs``, with a
WARNING at load and ``reason_code_path: "pred_contribs"`` in the model details.
``approximate=True`` uses XGBoost's cheaper path attribution (``approx_contribs``) instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from features.transform import TabularFeatures
from serving.jsontext import json_cells, json_floats
from serving.treeshap import LeafShapTable, TreeShapTable

APPROVE = "approve"
DECLINE = "decline"


@dataclass(frozen=True)
class CreditScorer:
    """What one credit model version needs to answer; built once per loaded version."""

    features: TabularFeatures
    booster: Any  # xgboost.Booster
    threshold: float
    reason_codes: int = 3
    approximate: bool = False
    nthread: int = 1
    shap_table: TreeShapTable | LeafShapTable | None = None

    @property
    def input_names(self) -> list[str]:
        return list(self.features.input_features_)


@dataclass(frozen=True)
class CreditScores:
    probabilities: np.ndarray  # (n,) probability of default
    contributions: np.ndarray | None  # (n, n_inputs) log-odds contributions, None when reason codes are off


def scorer_from_pipeline(
    pipeline: Any,
    *,
    threshold: float,
    reason_codes: int = 3,
    approximate: bool = False,
    nthread: int = 1,
    nullable: frozenset[str] | None = None,
    shap_table: bool = True,
) -> CreditScorer:
    """The fast-path pieces of a trained ``Pipeline([("features", ...), ("model", XGBClassifier)])``."""
    steps = getattr(pipeline, "named_steps", None)
    if steps is None or "features" not in steps or "model" not in steps:
        raise ValueError("expected a sklearn Pipeline with steps 'features' and 'model'")
    features = steps["features"]
    if not hasattr(features, "transform_records") or not hasattr(features, "input_features_"):
        raise ValueError("the 'features' step is not a fitted TabularFeatures")
    clf = steps["model"]
    if not hasattr(clf, "get_booster"):
        raise ValueError("the 'model' step is not an XGBoost model")
    booster = clf.get_booster().copy()
    best = booster.attr("best_iteration")
    if best is not None and booster.num_boosted_rounds() > int(best) + 1:
        booster = booster[: int(best) + 1]  # what predict_proba uses after early stopping
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ValueError(f"credit-risk serving expects a binary:logistic booster, not {objective}")
    booster.set_param({"nthread": nthread})
    table: TreeShapTable | LeafShapTable | None = None
    if shap_table and not approximate:
        n_out = len(features.feature_names_out_)
        numeric = list(features.numeric)
        allowed = set(numeric) if nullable is None else set(nullable)
        null_mask = [i < len(numeric) and numeric[i] in allowed for i in range(n_out)]
        table = TreeShapTable.build(booster, n_out, features.aggregate_contributions, null_mask)
        if table is None:  # deep trees: too many cells; per-leaf tables cost more per row but grow linearly
            table = LeafShapTable.build(booster, n_out, features.aggregate_contributions)
    return CreditScorer(features, booster, threshold, reason_codes, approximate, nthread, table)


def score(records: Sequence[Mapping[str, Any]], scorer: CreditScorer, *, explain: bool = True) -> CreditScores:
    """Probabilities (and contributions when reason codes are on and ``explain``) for validated records."""
    return score_matrix(scorer.features.transform_records(records), scorer, explain=explain)


def score_matrix(X: np.ndarray, scorer: CreditScorer, *, explain: bool = True) -> CreditScores:
    """:func:`score` on the feature matrix (``transform_records`` of JSON records, ``transform`` of a frame)."""
    if not explain or scorer.reason_codes == 0:  # no reason codes: XGBoost's own scoring is the cheapest
        proba = np.asarray(scorer.booster.inplace_predict(X, validate_features=False), dtype=np.float64)
        return CreditScores(proba.reshape(-1), None)
    table = scorer.shap_table
    if table is not None:
        contribs, margin, unsupported = table.lookup(X)
        if table.margins_ok:
            proba = 1.0 / (1.0 + np.exp(-margin))
        else:
            proba = np.asarray(scorer.booster.inplace_predict(X, validate_features=False), dtype=np.float64)
        if unsupported is not None:  # a missing value the table has no cell for: ask XGBoost
            contribs[unsupported] = _pred_contribs(X[unsupported], scorer)
            proba[unsupported] = scorer.booster.inplace_predict(X[unsupported], validate_features=False)
        return CreditScores(proba.reshape(-1), contribs)
    proba = np.asarray(scorer.booster.inplace_predict(X, validate_features=False), dtype=np.float64)
    return CreditScores(proba.reshape(-1), _pred_contribs(X, scorer))


def _pred_contribs(X: np.ndarray, scorer: CreditScorer) -> np.ndarray:
    import xgboost as xgb

    raw = scorer.booster.predict(
        xgb.DMatrix(X, nthread=scorer.nthread),
        pred_contribs=True,
        approx_contribs=scorer.approximate,
        validate_features=False,
    )
    return scorer.features.aggregate_contributions(np.asarray(raw))


def decisions_at(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """``decline`` at or above the threshold, ``approve`` below (an object array)."""
    return np.where(probabilities >= threshold, DECLINE, APPROVE).astype(object)


class AnswerScorer(Protocol):
    """What :func:`answers` reads of a scorer (an XGBoost :class:`CreditScorer` or a scorecard's)."""

    @property
    def threshold(self) -> float: ...
    @property
    def reason_codes(self) -> int: ...
    @property
    def features(self) -> TabularFeatures: ...


def answers(records: Sequence[Mapping[str, Any]], scores: CreditScores, scorer: AnswerScorer) -> list[dict[str, Any]]:
    """One answer per record: probability, decision, threshold and reason codes."""
    t = scorer.threshold
    probs = scores.probabilities.tolist()
    out: list[dict[str, Any]] = []
    C = scores.contributions
    if C is None or scorer.reason_codes == 0:
        for p in probs:
            out.append({"probability_of_default": p, "decision": DECLINE if p >= t else APPROVE, "threshold": t, "reason_codes": []})
        return out
    k = min(scorer.reason_codes, C.shape[1])
    order = np.argsort(-C, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(C, order, axis=1)
    # sorted largest first, so the positive contributions are a prefix of each row
    n_pos = (top > 0).sum(axis=1).tolist()
    top_r = np.round(top, 4).tolist()
    names = scorer.features.input_features_
    feature_of = np.asarray(names, dtype=object)[order].tolist()
    decisions = decisions_at(scores.probabilities, t).tolist()
    for i, p in enumerate(probs):
        m = n_pos[i]
        if m:
            rec = records[i]
            fs = feature_of[i]
            cs = top_r[i]
            reasons = [{"feature": fs[q], "value": rec.get(fs[q]), "contribution": cs[q]} for q in range(m)]
        else:
            reasons = []
        out.append({"probability_of_default": p, "decision": decisions[i], "threshold": t, "reason_codes": reasons})
    return out


def predict(
    records: Sequence[Mapping[str, Any]], scorer: CreditScorer, *, explain: bool = True
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Answers for validated records, and the scores (for the log and the score histogram).

    ``explain=False``: no reason codes (an empty list in each answer), and none computed.
    """
    s = score(records, scorer, explain=explain)
    return answers(records, s, scorer), s.probabilities


def flat_reason_codes(columns: Mapping[str, np.ndarray], scores: CreditScores, scorer: CreditScorer) -> list[str]:
    """The ``reason_codes`` column of a scored file, column by column: for each row the same text as
    ``json.dumps(answers(...)[i]["reason_codes"], separators=(",", ":"))``, ``""`` for none.

    ``columns`` maps each input field to its values (a frame's column arrays); only the cells that
    become reasons are encoded, so a chunk costs a few array operations and one join per row.
    """
    C = scores.contributions
    n = len(scores.probabilities)
    if C is None or scorer.reason_codes == 0 or n == 0:
        return [""] * n
    k = min(scorer.reason_codes, C.shape[1])
    order = np.argsort(-C, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(C, order, axis=1)
    chosen = top > 0  # sorted largest first: the positive contributions are a prefix of each row
    n_pos = chosen.sum(axis=1).tolist()
    top_r = np.round(top, 4)
    cells = np.empty((n, k), dtype=object)
    for j, name in enumerate(scorer.features.input_features_):
        rows, qs = np.nonzero((order == j) & chosen)
        if not len(rows):
            continue
        values = json_cells(np.asarray(columns[name])[rows])
        head = '{"feature":' + json.dumps(name) + ',"value":'
        contribs = json_floats(top_r[rows, qs])
        cells[rows, qs] = [f'{head}{v},"contribution":{c}}}' for v, c in zip(values, contribs, strict=True)]
    return ["[" + ",".join(r[:m]) + "]" if m else "" for r, m in zip(cells.tolist(), n_pos, strict=True)]
