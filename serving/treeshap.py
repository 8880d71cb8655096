"""Exact TreeSHAP contributions of an XGBoost model by table lookup.

XGBoost's ``pred_contribs`` costs O(trees x leaves x depth^2) per row: about 0.1-0.3 ms
per row for a 100-tree depth-4 credit model on this machine, which would cap a
1,000-row batch at a few thousand rows per second. But the TreeSHAP values of one tree
depend on a row only through which side of each of the tree's thresholds its features
fall (and whether they are missing). So, when the model is loaded, we enumerate for every
tree all combinations of those "cells", ask XGBoost itself for that tree's exact
contributions at one representative point per cell (on the one-tree slice ``booster[t:t+1]``),
and store them. At request time a row's contributions are the sum over trees of one
table row each: the same numbers XGBoost would give (up to float rounding), in a few
microseconds per row.

The same cells also fix which leaf each tree ends in, so the table carries each tree's
leaf value too: the margin (log-odds) is ``base_margin`` plus the sum of the row's leaf
values, an exact evaluation of the same trees, which spares the request XGBoost's
per-call overhead (about 0.2 ms, most of a single-row request).

The table is built only when it is small (shallow trees; the credit models have depth 4)
and only for gbtree models with numeric splits and one tree per round; it is checked
against ``pred_contribs`` on probe rows before use. Otherwise :meth:`TreeShapTable.build`
returns None and the caller uses ``pred_contribs`` directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_CELLS = 2_000_000  # table rows over all trees (x inputs x 4 bytes)
MAX_CELLS_PER_TREE = 200_000
BROADCAST_LIMIT = 250_000  # n x features x thresholds below which one broadcast compare beats searchsorted
_UNSUPPORTED = -(1 << 26)  # a tree's cell sums one entry per feature it uses (<= 31): stays negative in int32
TOLERANCE = 1e-3
MARGIN_TOLERANCE = 1e-4


@dataclass(frozen=True)
class TreeShapTable:
    thresholds: list[np.ndarray]  # per output feature: sorted unique split thresholds over all trees (float32)
    padded: np.ndarray  # (F, Kmax) thresholds padded with +inf, for the broadcast path
    nan_code: np.ndarray  # (F,) global code of a missing value (K_f + 1)
    by_feature: list[np.ndarray]  # per feature (K_f + 2, T) int32: global code -> local state x stride per tree
    tree_offset: np.ndarray  # (T,) first table row of each tree
    table: np.ndarray  # (cells, n_inputs + 1) float32: contributions, then the tree's leaf value
    base_margin: float  # intercept plus the leaves of split-less trees, in log-odds
    margins_ok: bool = False  # the margins matched XGBoost's at build time

    @property
    def cells(self) -> int:
        return int(self.table.shape[0])

    # ------------------------------------------------------------------ lookup
    def codes(self, X: np.ndarray) -> np.ndarray:
        """(F, n) int: per feature, how many of its thresholds each value reaches; NaN -> nan_code."""
        n, F = X.shape
        kmax = self.padded.shape[1]
        if n * F * kmax <= BROADCAST_LIMIT:
            g = (X[:, :, None] >= self.padded[None, :, :]).sum(axis=2).T.copy()
        else:
            g = np.empty((F, n), dtype=np.intp)
            for f in range(F):
                g[f] = np.searchsorted(self.thresholds[f], X[:, f], side="right")
        nan = np.isnan(X)
        if nan.any():
            rows, cols = np.nonzero(nan)
            g[cols, rows] = self.nan_code[cols]
        return g

    def lookup(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(n, n_inputs) contributions, (n,) margins, and a mask of rows the table cannot answer (or None)."""
        g = self.codes(X)
        cells = np.take(self.by_feature[0], g[0], axis=0)  # (n, T): a whole row of per-tree offsets per code
        for f in range(1, len(self.by_feature)):
            cells += np.take(self.by_feature[f], g[f], axis=0)
        cells += self.tree_offset
        unsupported = None
        if int(cells.min()) < 0:
            bad = cells < 0
            unsupported = bad.any(axis=1)
            cells = np.where(bad, 0, cells)
        out = np.take(self.table, cells.T, axis=0).sum(axis=0, dtype=np.float64)  # (T, n, k) -> (n, k)
        return out[:, :-1], out[:, -1] + self.base_margin, unsupported

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        contribs, _, unsupported = self.lookup(X)
        return contribs, unsupported

    # ------------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        booster: Any,
        n_features: int,
        aggregate: Callable[[np.ndarray], np.ndarray],
        nullable: Sequence[bool],
        *,
        probe: np.ndarray | None = None,
    ) -> TreeShapTable | None:
        """The table for ``booster``, or None when it would be too large or cannot be exact."""
        try:
            table = cls._build(booster, n_features, aggregate, nullable)
        except _NotTabulable as exc:
            logger.info("TreeSHAP table not used: %s; reason codes come from pred_contribs", exc)
            return None
        if not table._agrees(booster, n_features, aggregate, nullable, probe):
            return None
        return table

    @classmethod
    def _build(
        cls, booster: Any, F: int, aggregate: Callable[[np.ndarray], np.ndarray], nullable: Sequence[bool]
    ) -> TreeShapTable:
        import xgboost as xgb

        model = json.loads(bytes(booster.save_raw(raw_format="json")))
        gb = model["learner"]["gradient_booster"]
        if gb.get("name") != "gbtree":
            raise _NotTabulable(f"booster type {gb.get('name')}")
        trees = gb["model"]["trees"]
        if int(gb["model"]["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
            raise _NotTabulable("more than one tree per round")
        if len(trees) != booster.num_boosted_rounds():
            raise _NotTabulable("trees and rounds differ (multi-class?)")
        if len(nullable) != F:
            raise _NotTabulable("nullable mask does not match the features")
        base_margin = _intercept(model)

        per_tree: list[dict[int, np.ndarray]] = []
        global_thr: list[set[float]] = [set() for _ in range(F)]
        total = 0
        for t in trees:
            if any(int(s) != 0 for s in t.get("split_type", [])):
                raise _NotTabulable("categorical splits")
            left = t["left_children"]
            thr: dict[int, set[float]] = {}
            for node, child in enumerate(left):
                if child != -1:
                    f = int(t["split_indices"][node])
                    if f >= F:
                        raise _NotTabulable(f"split on feature {f} of {F}")
                    thr.setdefault(f, set()).add(float(np.float32(t["split_conditions"][node])))
            local = {f: np.array(sorted(v), dtype=np.float32) for f, v in thr.items()}
            cells = 1
            for f, v in local.items():
                cells *= len(v) + 1 + (1 if nullable[f] else 0)
                global_thr[f].update(v.tolist())
            if cells > MAX_CELLS_PER_TREE:
                raise _NotTabulable(f"a tree has {cells} cells (deep trees)")
            total += cells if local else 0
            if total > MAX_CELLS:
                raise _NotTabulable(f"more than {MAX_CELLS} cells in all")
            per_tree.append(local)

        thresholds = [np.array(sorted(s), dtype=np.float32) for s in global_thr]
        kmax = max(1, max(len(t) for t in thresholds))
        padded = np.full((F, kmax), np.inf, dtype=np.float32)
        for f, t in enumerate(thresholds):
            padded[f, : len(t)] = t
        nan_code = np.array([len(t) + 1 for t in thresholds], dtype=np.int64)

        if max((len(local) for local in per_tree), default=0) > 31:
            raise _NotTabulable("a tree splits on more than 31 features")
        one_tree_base = _intercept(model)
        split_trees = [ti for ti, local in enumerate(per_tree) if local]
        T = len(split_trees)
        if T == 0:
            raise _NotTabulable("the model has no splits")
        by_feature = [np.zeros((len(thresholds[f]) + 2, T), dtype=np.int64) for f in range(F)]
        tree_offset: list[int] = []
        tables: list[np.ndarray] = []
        row_offset = 0
        for ti, local in enumerate(per_tree):
            if not local:  # a tree without splits adds a constant to every margin and nothing else
                base_margin += float(np.float32(trees[ti]["split_conditions"][0]))
        for column, ti in enumerate(split_trees):
            local = per_tree[ti]
            feats = sorted(local)
            counts = [len(local[f]) + 1 + (1 if nullable[f] else 0) for f in feats]
            strides = np.cumprod([1, *counts[:-1]]).tolist()
            cells = int(np.prod(counts))
            reps = np.zeros((cells, F), dtype=np.float32)
            idx = np.arange(cells)
            tree_offset.append(row_offset)
            for f, count, stride in zip(feats, counts, strides, strict=True):
                lt = local[f]
                values = np.empty(count, dtype=np.float32)
                values[0] = np.nextafter(lt[0], np.float32(-np.inf), dtype=np.float32)
                values[1 : len(lt) + 1] = lt
                if nullable[f]:
                    values[len(lt) + 1] = np.nan
                reps[:, f] = values[(idx // stride) % count]
                # global code -> local state: how many of this tree's thresholds the value reaches
                gt = thresholds[f]
                seg = by_feature[f][:, column]
                seg[0] = 0
                seg[1 : len(gt) + 1] = np.searchsorted(lt, gt, side="right") * stride
                seg[len(gt) + 1] = (len(lt) + 1) * stride if nullable[f] else _UNSUPPORTED
            one_tree = booster[ti : ti + 1]  # pred_contribs only supports ranges starting at 0: slice instead
            dm = xgb.DMatrix(reps, missing=np.nan)
            raw = np.asarray(one_tree.predict(dm, pred_contribs=True, validate_features=False))
            leaf = np.asarray(one_tree.predict(dm, output_margin=True, validate_features=False), dtype=np.float64)
            agg = np.asarray(aggregate(raw), dtype=np.float32)
            tables.append(np.concatenate([agg, (leaf - one_tree_base).reshape(-1, 1).astype(np.float32)], axis=1))
            row_offset += cells
        return cls(
            thresholds=thresholds,
            padded=padded,
            nan_code=nan_code.astype(np.intp),
            by_feature=[m.astype(np.int32) for m in by_feature],
            tree_offset=np.asarray(tree_offset, dtype=np.int32),
            table=np.concatenate(tables, axis=0),
            base_margin=base_margin,
        )
    def _agrees(
        self,
        booster: Any,
        F: int,
        aggregate: Callable[[np.ndarray], np.ndarray],
        nullable: Sequence[bool],
        probe: np.ndarray | None,
    ) -> bool:
        """Compare with pred_contribs on probe rows: thresholds, their neighbours, gaps, NaN."""
        import xgboost as xgb

        rng = np.random.default_rng(0)
        n = 400
        X = np.zeros((n, F), dtype=np.float32)
        for f in range(F):
            t = self.thresholds[f]
            if len(t) == 0:
                continue
            choices = np.concatenate(
                [t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf)), [t[0] - 1, t[-1] + 1]]
            ).astype(np.float32)
            X[:, f] = rng.choice(choices, n)
            if nullable[f]:
                X[rng.random(n) < 0.1, f] = np.nan
        if probe is not None and probe.shape[1] == F:
            X = np.concatenate([X, probe.astype(np.float32)])
        dm = xgb.DMatrix(X, missing=np.nan)
        want = aggregate(np.asarray(booster.predict(dm, pred_contribs=True, validate_features=False)))
        want_margin = np.asarray(booster.predict(dm, output_margin=True, validate_features=False), dtype=np.float64)
        got, margin, unsupported = self.lookup(X)
        if unsupported is not None:
            keep = ~unsupported
            want, got, want_margin, margin = want[keep], got[keep], want_margin[keep], margin[keep]
        err = float(np.max(np.abs(want - got))) if got.size else 0.0
        if not err <= TOLERANCE:
            logger.warning("TreeSHAP table disagrees with pred_contribs (max error %.2g); not using it", err)
            return False
        margin_err = float(np.max(np.abs(want_margin - margin))) if margin.size else 0.0
        object.__setattr__(self, "margins_ok", margin_err <= MARGIN_TOLERANCE)
        if not self.margins_ok:
            logger.warning("tree margins from the table disagree with XGBoost (%.2g); scoring with inplace_predict", margin_err)
        logger.info("TreeSHAP table: %d cells, max error %.1g (contributions), %.1g (margins)", self.cells, err, margin_err)
        return True


class _NotTabulable(Exception):
    pass


def _intercept(model: dict[str, Any]) -> float:
    """The model's base score in margin (log-odds) space, what every one-tree slice also adds."""
    raw = str(model["learner"]["learner_model_param"]["base_score"]).strip("[]").split(",")[0]
    p = float(raw)
    objective = model["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise _NotTabulable(f"objective {objective}")
    if not 0.0 < p < 1.0:
        raise _NotTabulable(f"base_score {p} is not a probability")
    return float(np.log(p / (1.0 - p)))

