"""Cell TreeSHAP tables (:class:`TreeShapTable`): one table row per group of leaves (see :mod:`serving.treeshap`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.treeshap.leaves import MARGIN_TOLERANCE, TOLERANCE, LeafShapTable, NotTabulable, intercept

logger = logging.getLogger(__name__)

MAX_CELLS = 2_000_000  # cell-table rows over all groups (x inputs x 4 bytes)
GROUP_CELLS = 4096  # a tree whose leaves span more cells is tabulated in groups of leaves (subtrees)
BROADCAST_LIMIT = 250_000  # n x features x thresholds below which one broadcast compare beats searchsorted
_UNSUPPORTED = -(1 << 26)  # a tree's cell sums one entry per feature it uses (<= 31): stays negative in int32
CELL_CHUNK_ROWS = 256  # rows per block of the cell lookup


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
        if X.shape[0] <= CELL_CHUNK_ROWS:
            return self._lookup(X)
        # blocks of rows keep the (groups x rows x inputs) intermediate in cache: linear cost in rows
        parts = [self._lookup(X[i : i + CELL_CHUNK_ROWS]) for i in range(0, X.shape[0], CELL_CHUNK_ROWS)]
        unsupported = None
        if any(u is not None for _, _, u in parts):
            unsupported = np.concatenate([np.zeros(len(m), dtype=bool) if u is None else u for _, m, u in parts])
        return np.concatenate([c for c, _, _ in parts]), np.concatenate([m for _, m, _ in parts]), unsupported

    def _lookup(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
        except NotTabulable as exc:
            logger.info("TreeSHAP cell table not used: %s; per-leaf tables instead", exc)
            return None
        if not table._agrees(booster, n_features, aggregate, nullable, probe):
            return None
        return table

    @classmethod
    def _build(
        cls, booster: Any, F: int, aggregate: Callable[[np.ndarray], np.ndarray], nullable: Sequence[bool]
    ) -> TreeShapTable:
        model = json.loads(bytes(booster.save_raw(raw_format="json")))
        gb = model["learner"]["gradient_booster"]
        if gb.get("name") != "gbtree":
            raise NotTabulable(f"booster type {gb.get('name')}")
        trees = gb["model"]["trees"]
        if int(gb["model"]["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
            raise NotTabulable("more than one tree per round")
        if len(trees) != booster.num_boosted_rounds():
            raise NotTabulable("trees and rounds differ (multi-class?)")
        if len(nullable) != F:
            raise NotTabulable("nullable mask does not match the features")
        base_margin = intercept(model)
        to_inputs = np.asarray(aggregate(np.eye(F)), dtype=np.float64)

        groups: list[_Group] = []
        global_thr: list[set[float]] = [set() for _ in range(F)]
        total = 0
        for ti, t in enumerate(trees):
            if any(int(s) != 0 for s in t.get("split_type", [])):
                raise NotTabulable("categorical splits")
            if t["left_children"][0] == -1:  # a tree without splits adds a constant to every margin and nothing else
                base_margin += float(np.float32(t["split_conditions"][0]))
                continue
            for group in _partition(t, ti, F, nullable, GROUP_CELLS):
                groups.append(group)
                for f, v in group.local.items():
                    global_thr[f].update(v.tolist())
                total += group.cells
                if total > MAX_CELLS:
                    raise NotTabulable(f"more than {MAX_CELLS:,} cells in all (deep trees)")
        if not groups:
            raise NotTabulable("the model has no splits")
        if max(len(g.local) for g in groups) > 31:
            raise NotTabulable("a group of leaves splits on more than 31 features")

        thresholds = [np.array(sorted(s), dtype=np.float32) for s in global_thr]
        kmax = max(1, max(len(t) for t in thresholds))
        padded = np.full((F, kmax), np.inf, dtype=np.float32)
        for f, t in enumerate(thresholds):
            padded[f, : len(t)] = t
        nan_code = np.array([len(t) + 1 for t in thresholds], dtype=np.int64)

        one_tree_base = intercept(model)
        T = len(groups)
        by_feature = [np.zeros((len(thresholds[f]) + 2, T), dtype=np.int64) for f in range(F)]
        tree_offset: list[int] = []
        tables: list[np.ndarray] = []
        row_offset = 0
        for column, group in enumerate(groups):
            local = group.local
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
                # global code -> local state: how many of this group's thresholds the value reaches
                gt = thresholds[f]
                seg = by_feature[f][:, column]
                seg[0] = 0
                seg[1 : len(gt) + 1] = np.searchsorted(lt, gt, side="right") * stride
                seg[len(gt) + 1] = (len(lt) + 1) * stride if nullable[f] else _UNSUPPORTED
            # the group's exact TreeSHAP values at one point per cell, from its leaf tables (no XGBoost call)
            one_tree = LeafShapTable.from_trees([trees[group.tree]], F, to_inputs, one_tree_base, keep=[group.leaves])
            agg, margin, _ = one_tree.lookup(reps, chunk=4096)
            leaf = margin - one_tree_base
            tables.append(np.concatenate([agg, leaf.reshape(-1, 1)], axis=1).astype(np.float32))
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


@dataclass(frozen=True)
class _Group:
    """Leaves of one tree tabulated together: the leaves under one node, and the thresholds they depend on."""

    tree: int
    local: dict[int, np.ndarray]  # feature -> sorted float32 thresholds on the group's root paths
    leaves: frozenset[int]  # the tree's leaf node ids in the group
    cells: int


def _partition(tree: dict[str, Any], ti: int, F: int, nullable: Sequence[bool], budget: int) -> list[_Group]:
    """Split a tree's leaves into groups of at most ``budget`` cells each (or single leaves).

    A leaf's TreeSHAP values depend on a row only through the thresholds on its root path, so
    the leaves under a node depend only on the node's ancestors' thresholds and those inside its
    subtree. Starting at the root, a node whose leaves span too many cells is split into its two
    children: a deep tree becomes a few groups of shallow-tree size instead of one table whose
    cells multiply with every split.
    """
    left, right, split, cond = tree["left_children"], tree["right_children"], tree["split_indices"], tree["split_conditions"]
    out: list[_Group] = []
    stack: list[tuple[int, dict[int, set[float]]]] = [(0, {})]
    while stack:
        node, above = stack.pop()
        local = {f: set(v) for f, v in above.items()}
        leaves: list[int] = []
        inner = [node]
        while inner:
            n = inner.pop()
            if left[n] == -1:
                leaves.append(n)
                continue
            f = int(split[n])
            if f >= F:
                raise NotTabulable(f"split on feature {f} of {F}")
            local.setdefault(f, set()).add(float(np.float32(cond[n])))
            inner.extend((int(left[n]), int(right[n])))
        cells = 1
        for f, v in local.items():
            cells *= len(v) + 1 + (1 if nullable[f] else 0)
        if cells <= budget or left[node] == -1:
            thresholds = {f: np.array(sorted(v), dtype=np.float32) for f, v in local.items()}
            out.append(_Group(ti, thresholds, frozenset(leaves), cells))
            continue
        below = {f: set(v) for f, v in above.items()}
        below.setdefault(int(split[node]), set()).add(float(np.float32(cond[node])))
        stack.append((int(right[node]), below))
        stack.append((int(left[node]), below))
    return out
