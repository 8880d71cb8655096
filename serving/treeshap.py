"""Exact TreeSHAP contributions of an XGBoost model by table lookup, built without XGBoost calls.

XGBoost's ``pred_contribs`` computes path-dependent TreeSHAP at O(trees x leaves x depth^2)
per row plus a DMatrix per call: tenths of a millisecond to milliseconds for one row. Two
exact tables replace it, both checked against ``pred_contribs`` on probe rows before use.

Per-leaf tables (:class:`LeafShapTable`). For a leaf with value ``v`` whose root path splits
on the distinct features ``P`` (``d = |P|``), feature ``i`` in ``P`` receives

    v * (o_i - z_i) * sum over S in P\\{i}: |S|! (d-|S|-1)! / d! * prod_{j in S} o_j * prod_{j not in S, j != i} z_j

where ``z_j`` is the product of the cover fractions of the path's edges on ``j`` and ``o_j`` is
1 when the row follows all of them, else 0 (missing values take the default branch): the
closed form of the algorithm XGBoost runs. Since the ``o_j`` are bits, a leaf's contributions
depend on the row only through a ``d``-bit mask, so we tabulate ``2^d x d`` values per leaf
from the tree's JSON, and a request evaluates every split once, forms each leaf's mask with
two sparse products and sums one table entry per leaf and path feature. Cost per row grows
linearly with leaves x d, never exponentially with the splits a tree holds.

Cell tables (:class:`TreeShapTable`). The TreeSHAP values of a group of leaves depend on a row
only through which side of the thresholds on those leaves' root paths its features fall
("cells"). A tree is split into groups of leaves, the leaves under one node, small enough to
tabulate (at most :data:`GROUP_CELLS` cells each; a shallow tree is one group, a depth-6 tree a
few subtrees): we evaluate each group's per-leaf tables at one point per cell and store the
result. A request then costs one table row per group: a depth-6 credit model has about twice
the groups of a depth-4 one (300 vs 150), not a pass over every leaf and path feature (the
per-leaf lookup, about 20x slower, which depth 5 and 6 used before). Filling the cells takes a
second or two from the per-leaf tables, without XGBoost calls.

Both also carry the leaf values, so the margin (log-odds) is an exact evaluation of the same
trees, sparing XGBoost's per-call overhead. Models whose groups exceed :data:`MAX_CELLS` in all use
the per-leaf tables; too large for both (beyond :data:`MAX_TABLE_VALUES`), ``pred_contribs``
with a WARNING.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_CELLS = 2_000_000  # cell-table rows over all groups (x inputs x 4 bytes)
GROUP_CELLS = 4096  # a tree whose leaves span more cells is tabulated in groups of leaves (subtrees)
BROADCAST_LIMIT = 250_000  # n x features x thresholds below which one broadcast compare beats searchsorted
_UNSUPPORTED = -(1 << 26)  # a tree's cell sums one entry per feature it uses (<= 31): stays negative in int32
MAX_TABLE_VALUES = 32_000_000  # float32 values over all leaf tables (128 MB); indices stay in int32
MAX_PATH_FEATURES = 12  # distinct features on one root-to-leaf path (2^d table rows per leaf)
CHUNK_ROWS = 64  # rows per block of the per-leaf lookup
CELL_CHUNK_ROWS = 256  # rows per block of the cell lookup
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
        except _NotTabulable as exc:
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
            raise _NotTabulable(f"booster type {gb.get('name')}")
        trees = gb["model"]["trees"]
        if int(gb["model"]["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
            raise _NotTabulable("more than one tree per round")
        if len(trees) != booster.num_boosted_rounds():
            raise _NotTabulable("trees and rounds differ (multi-class?)")
        if len(nullable) != F:
            raise _NotTabulable("nullable mask does not match the features")
        base_margin = _intercept(model)
        to_inputs = np.asarray(aggregate(np.eye(F)), dtype=np.float64)

        groups: list[_Group] = []
        global_thr: list[set[float]] = [set() for _ in range(F)]
        total = 0
        for ti, t in enumerate(trees):
            if any(int(s) != 0 for s in t.get("split_type", [])):
                raise _NotTabulable("categorical splits")
            if t["left_children"][0] == -1:  # a tree without splits adds a constant to every margin and nothing else
                base_margin += float(np.float32(t["split_conditions"][0]))
                continue
            for group in _partition(t, ti, F, nullable, GROUP_CELLS):
                groups.append(group)
                for f, v in group.local.items():
                    global_thr[f].update(v.tolist())
                total += group.cells
                if total > MAX_CELLS:
                    raise _NotTabulable(f"more than {MAX_CELLS:,} cells in all (deep trees)")
        if not groups:
            raise _NotTabulable("the model has no splits")
        if max(len(g.local) for g in groups) > 31:
            raise _NotTabulable("a group of leaves splits on more than 31 features")

        thresholds = [np.array(sorted(s), dtype=np.float32) for s in global_thr]
        kmax = max(1, max(len(t) for t in thresholds))
        padded = np.full((F, kmax), np.inf, dtype=np.float32)
        for f, t in enumerate(thresholds):
            padded[f, : len(t)] = t
        nan_code = np.array([len(t) + 1 for t in thresholds], dtype=np.int64)

        one_tree_base = _intercept(model)
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
class LeafShapTable:
    node_feature: np.ndarray  # (N,) feature index of every split node over all trees
    node_threshold: np.ndarray  # (N,) float32 split condition: left when x < threshold
    node_default_left: np.ndarray  # (N,) bool: where a missing value goes
    edges: Any  # scipy csr (G, N): +1 left edge, -1 right edge, per (leaf, path feature) slot
    edge_right: np.ndarray  # (G,) right edges per slot
    edge_count: np.ndarray  # (G,) edges per slot
    mask_bits: Any  # scipy csr (L, G): 2^k for the k-th slot of each leaf
    slot_leaf: np.ndarray  # (G,) leaf of each slot
    slot_base: np.ndarray  # (G,) offset of the slot's column in its leaf's table
    slot_width: np.ndarray  # (G,) d of the slot's leaf (row stride of its table)
    slot_inputs: Any  # scipy csr (n_inputs, G): which input field a slot's contribution lands on
    leaf_full: np.ndarray  # (L,) mask of the leaf a row reaches: 2^d - 1
    leaf_value: np.ndarray  # (L,) float64
    values: np.ndarray  # flat float32 tables of all leaves
    base_margin: float  # intercept plus the leaves of split-less trees, in log-odds
    max_path_features: int
    margins_ok: bool = False  # the margins matched XGBoost's at build time

    @property
    def cells(self) -> int:
        """Tabulated values (the table's size)."""
        return int(self.values.shape[0])

    @property
    def leaves(self) -> int:
        return int(self.leaf_value.shape[0])

    # ------------------------------------------------------------------ lookup
    def lookup(self, X: np.ndarray, chunk: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(n, n_inputs) contributions, (n,) margins, and None (every row is answered)."""
        X = np.asarray(X, dtype=np.float32)
        if X.shape[0] <= chunk:
            contribs, margin = self._lookup(X)
        else:  # blocks of rows keep the (slots x rows) intermediates in cache
            parts = [self._lookup(X[i : i + chunk]) for i in range(0, X.shape[0], chunk)]
            contribs = np.concatenate([c for c, _ in parts])
            margin = np.concatenate([m for _, m in parts])
        return contribs, margin, None

    def _lookup(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xn = X.T[self.node_feature]  # (N, n)
        go_left = Xn < self.node_threshold[:, None]
        missing = np.isnan(Xn)
        if missing.any():
            go_left = np.where(missing, self.node_default_left[:, None], go_left)
        ok = self.edges @ go_left.astype(np.float32)  # (G, n): left edges taken minus right edges not taken
        follows = (ok + self.edge_right[:, None]) == self.edge_count[:, None]
        mask = (self.mask_bits @ follows.astype(np.float32)).astype(np.int32)  # (L, n)
        index = mask[self.slot_leaf]
        index *= self.slot_width[:, None]
        index += self.slot_base[:, None]
        contribs = self.slot_inputs @ self.values[index]  # (n_inputs, n)
        margin = self.leaf_value @ (mask == self.leaf_full[:, None]) + self.base_margin
        return np.ascontiguousarray(contribs.T), np.asarray(margin, dtype=np.float64)

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
        nullable: Sequence[bool] | None = None,
        *,
        probe: np.ndarray | None = None,
    ) -> LeafShapTable | None:
        """The tables for ``booster``, or None (with a WARNING) when too large or not exact.

        ``nullable`` is accepted for compatibility; missing values follow each split's default branch.
        """
        try:
            table = cls._build(booster, n_features, aggregate)
        except _NotTabulable as exc:
            logger.warning("TreeSHAP tables not used: %s; reason codes come from XGBoost's pred_contribs (slower)", exc)
            return None
        if not table._agrees(booster, n_features, aggregate, probe):
            return None
        return table

    @classmethod
    def _build(cls, booster: Any, F: int, aggregate: Callable[[np.ndarray], np.ndarray]) -> LeafShapTable:
        model = json.loads(bytes(booster.save_raw(raw_format="json")))
        gb = model["learner"]["gradient_booster"]
        if gb.get("name") != "gbtree":
            raise _NotTabulable(f"booster type {gb.get('name')}")
        trees = gb["model"]["trees"]
        if int(gb["model"]["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
            raise _NotTabulable("more than one tree per round")
        if len(trees) != booster.num_boosted_rounds():
            raise _NotTabulable("trees and rounds differ (multi-class?)")
        to_inputs = np.asarray(aggregate(np.eye(F)), dtype=np.float64)  # (F, n_inputs): the linear aggregation
        return cls.from_trees(trees, F, to_inputs, _intercept(model))

    @classmethod
    def from_trees(
        cls,
        trees: list[dict[str, Any]],
        F: int,
        to_inputs: np.ndarray,
        base_margin: float,
        *,
        keep: Sequence[frozenset[int] | None] | None = None,
    ) -> LeafShapTable:
        """Tables for XGBoost JSON ``trees``; ``to_inputs`` (F, n_inputs) maps model columns onto input fields.

        ``keep``: per tree, the leaf node ids to tabulate (None: all); the others contribute nothing.
        """
        import scipy.sparse as sp

        node_feature: list[int] = []
        node_threshold: list[float] = []
        node_default_left: list[bool] = []
        leaf_value: list[float] = []
        leaf_slots: list[list[tuple[int, list[tuple[int, bool]]]]] = []  # per leaf: (feature, [(node, left)])
        leaf_z: list[np.ndarray] = []
        for ti, t in enumerate(trees):
            if any(int(s) != 0 for s in t.get("split_type", [])):
                raise _NotTabulable("categorical splits")
            only = keep[ti] if keep is not None else None
            left, right = t["left_children"], t["right_children"]
            split, cond, default_left, cover = t["split_indices"], t["split_conditions"], t["default_left"], t["sum_hessian"]
            if left[0] == -1:  # a tree without splits adds a constant to every margin and nothing else
                base_margin += float(np.float32(cond[0]))
                continue
            ids: dict[int, int] = {}
            for node, child in enumerate(left):
                if child != -1:
                    if int(split[node]) >= F:
                        raise _NotTabulable(f"split on feature {split[node]} of {F}")
                    ids[node] = len(node_feature)
                    node_feature.append(int(split[node]))
                    node_threshold.append(float(np.float32(cond[node])))
                    node_default_left.append(bool(default_left[node]))
            stack: list[tuple[int, list[tuple[int, bool, int]]]] = [(0, [])]
            while stack:
                node, path = stack.pop()
                if left[node] == -1:
                    if only is not None and node not in only:
                        continue
                    slots: dict[int, list[tuple[int, bool]]] = {}
                    z: dict[int, float] = {}
                    for parent, is_left, child in path:
                        f = int(split[parent])
                        slots.setdefault(f, []).append((ids[parent], is_left))
                        z[f] = z.get(f, 1.0) * (float(cover[child]) / float(cover[parent]))
                    if len(slots) > MAX_PATH_FEATURES:
                        raise _NotTabulable(f"a path splits on {len(slots)} distinct features (> {MAX_PATH_FEATURES})")
                    leaf_value.append(float(np.float32(cond[node])))
                    leaf_slots.append(list(slots.items()))
                    leaf_z.append(np.array([z[f] for f in slots]))
                    continue
                stack.append((int(left[node]), [*path, (node, True, int(left[node]))]))
                stack.append((int(right[node]), [*path, (node, False, int(right[node]))]))
        if not leaf_value:
            raise _NotTabulable("the model has no splits")
        widths = np.array([len(s) for s in leaf_slots], dtype=np.int64)
        total = int(np.sum(widths << widths))
        if total > MAX_TABLE_VALUES:
            raise _NotTabulable(f"the leaf tables would hold {total:,} values (> {MAX_TABLE_VALUES:,}; deep trees)")

        tables = _leaf_tables(np.asarray(leaf_value), leaf_z, widths)
        offsets = np.concatenate([[0], np.cumsum(widths << widths)[:-1]]).astype(np.int64)
        G = int(widths.sum())
        slot_leaf = np.repeat(np.arange(len(widths)), widths)
        slot_k = np.arange(G) - np.repeat(np.cumsum(widths) - widths, widths)
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        slot_feature = np.empty(G, dtype=np.int64)
        edge_right = np.zeros(G, dtype=np.float32)
        edge_count = np.zeros(G, dtype=np.float32)
        g = 0
        for path_slots in leaf_slots:
            for f, slot_edges in path_slots:
                slot_feature[g] = f
                for node, is_left in slot_edges:
                    rows.append(g)
                    cols.append(node)
                    vals.append(1.0 if is_left else -1.0)
                    edge_right[g] += 0.0 if is_left else 1.0
                    edge_count[g] += 1.0
                g += 1
        N = len(node_feature)
        edges_m = sp.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(G, N))
        mask_bits = sp.csr_matrix(
            (np.ldexp(1.0, slot_k).astype(np.float32), (slot_leaf, np.arange(G))), shape=(len(widths), G)
        )
        slot_inputs = sp.csr_matrix(to_inputs[slot_feature].T)  # (n_inputs, G)
        slot_inputs.eliminate_zeros()
        return cls(
            node_feature=np.asarray(node_feature, dtype=np.intp),
            node_threshold=np.asarray(node_threshold, dtype=np.float32),
            node_default_left=np.asarray(node_default_left, dtype=bool),
            edges=edges_m,
            edge_right=edge_right,
            edge_count=edge_count,
            mask_bits=mask_bits,
            slot_leaf=slot_leaf.astype(np.intp),
            slot_base=(offsets[slot_leaf] + slot_k).astype(np.int32),
            slot_width=widths[slot_leaf].astype(np.int32),
            slot_inputs=slot_inputs,
            leaf_full=((1 << widths) - 1).astype(np.int32),
            leaf_value=np.asarray(leaf_value, dtype=np.float64),
            values=np.concatenate([t.ravel() for t in tables]).astype(np.float32),
            base_margin=base_margin,
            max_path_features=int(widths.max()),
        )

    def _agrees(
        self, booster: Any, F: int, aggregate: Callable[[np.ndarray], np.ndarray], probe: np.ndarray | None
    ) -> bool:
        """Compare with pred_contribs on probe rows: on, just below and just above thresholds, and NaN."""
        import xgboost as xgb

        rng = np.random.default_rng(0)
        n = 400
        X = np.zeros((n, F), dtype=np.float32)
        for f in range(F):
            t = np.unique(self.node_threshold[self.node_feature == f])
            if len(t) == 0:
                continue
            choices = np.concatenate(
                [t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf)), [t[0] - 1, t[-1] + 1]]
            ).astype(np.float32)
            X[:, f] = rng.choice(choices, n)
            X[rng.random(n) < 0.1, f] = np.nan
        if probe is not None and probe.shape[1] == F:
            X = np.concatenate([X, probe.astype(np.float32)])
        dm = xgb.DMatrix(X, missing=np.nan)
        want = aggregate(np.asarray(booster.predict(dm, pred_contribs=True, validate_features=False)))
        want_margin = np.asarray(booster.predict(dm, output_margin=True, validate_features=False), dtype=np.float64)
        got, margin, _ = self.lookup(X)
        err = float(np.max(np.abs(want - got))) if got.size else 0.0
        if not err <= TOLERANCE:
            logger.warning("TreeSHAP tables disagree with pred_contribs (max error %.2g); not using them", err)
            return False
        margin_err = float(np.max(np.abs(want_margin - margin))) if margin.size else 0.0
        object.__setattr__(self, "margins_ok", margin_err <= MARGIN_TOLERANCE)
        if not self.margins_ok:
            logger.warning("tree margins from the tables disagree with XGBoost (%.2g); scoring with inplace_predict", margin_err)
        logger.info(
            "TreeSHAP tables: %d leaves, up to %d path features, %d values, max error %.1g (contributions), %.1g (margins)",
            self.leaves, self.max_path_features, self.cells, err, margin_err,
        )
        return True


def _leaf_tables(value: np.ndarray, z: list[np.ndarray], widths: np.ndarray) -> list[np.ndarray]:
    """Per leaf a (2^d, d) table: the contribution of each path feature for each mask of followed features."""
    out: list[np.ndarray] = [np.empty(0)] * len(value)
    for d in np.unique(widths).tolist():
        idx = np.flatnonzero(widths == d)
        M, full = 1 << d, (1 << d) - 1
        zs = np.stack([z[i] for i in idx])  # (n_leaves, d)
        zprod = np.ones((len(idx), M))  # zprod[:, C] = product of z_j over the bits j of C
        for C in range(1, M):
            low = (C & -C).bit_length() - 1
            zprod[:, C] = zprod[:, C & (C - 1)] * zs[:, low]
        masks = np.arange(M)
        size = np.array([bin(S).count("1") for S in range(M)])
        weight = np.array([factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)] + [0.0])
        term = np.zeros((len(idx), M, d))  # term[:, S, i] for i not in S: weight(|S|) * prod_{j not in S, j != i} z_j
        for i in range(d):
            S = masks[(masks >> i & 1) == 0]
            term[:, S, i] = weight[size[S]] * zprod[:, full ^ S ^ (1 << i)]
        subset = ((masks[:, None] & masks[None, :]) == masks[None, :]).astype(np.float64)  # [m, S]: S within m
        phi = np.einsum("ms,gsi->gmi", subset, term)
        followed = (masks[:, None] >> np.arange(d)[None, :]) & 1  # (M, d)
        phi *= (followed[None, :, :] - zs[:, None, :]) * value[idx, None, None]
        for g, i in enumerate(idx.tolist()):
            out[i] = phi[g]
    return out


class _NotTabulable(Exception):
    pass


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
                raise _NotTabulable(f"split on feature {f} of {F}")
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


def _intercept(model: dict[str, Any]) -> float:
    """The model's base score in margin (log-odds) space."""
    raw = str(model["learner"]["learner_model_param"]["base_score"]).strip("[]").split(",")[0]
    p = float(raw)
    objective = model["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise _NotTabulable(f"objective {objective}")
    if not 0.0 < p < 1.0:
        raise _NotTabulable(f"base_score {p} is not a probability")
    return float(np.log(p / (1.0 - p)))
