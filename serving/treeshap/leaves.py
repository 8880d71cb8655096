"""Per-leaf TreeSHAP tables (:class:`LeafShapTable`): exact contributions of an XGBoost model by one
table entry per leaf and path feature (see :mod:`serving.treeshap`); also what the cell tables are
filled from."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_TABLE_VALUES = 32_000_000  # float32 values over all leaf tables (128 MB); indices stay in int32
MAX_PATH_FEATURES = 12  # distinct features on one root-to-leaf path (2^d table rows per leaf)
CHUNK_ROWS = 64  # rows per block of the per-leaf lookup
TOLERANCE = 1e-3
MARGIN_TOLERANCE = 1e-4


class NotTabulable(Exception):
    """The model cannot be tabulated (the reason says why); the caller falls back."""


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
        except NotTabulable as exc:
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
            raise NotTabulable(f"booster type {gb.get('name')}")
        trees = gb["model"]["trees"]
        if int(gb["model"]["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
            raise NotTabulable("more than one tree per round")
        if len(trees) != booster.num_boosted_rounds():
            raise NotTabulable("trees and rounds differ (multi-class?)")
        to_inputs = np.asarray(aggregate(np.eye(F)), dtype=np.float64)  # (F, n_inputs): the linear aggregation
        return cls.from_trees(trees, F, to_inputs, intercept(model))

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
                raise NotTabulable("categorical splits")
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
                        raise NotTabulable(f"split on feature {split[node]} of {F}")
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
                        raise NotTabulable(f"a path splits on {len(slots)} distinct features (> {MAX_PATH_FEATURES})")
                    leaf_value.append(float(np.float32(cond[node])))
                    leaf_slots.append(list(slots.items()))
                    leaf_z.append(np.array([z[f] for f in slots]))
                    continue
                stack.append((int(left[node]), [*path, (node, True, int(left[node]))]))
                stack.append((int(right[node]), [*path, (node, False, int(right[node]))]))
        if not leaf_value:
            raise NotTabulable("the model has no splits")
        widths = np.array([len(s) for s in leaf_slots], dtype=np.int64)
        total = int(np.sum(widths << widths))
        if total > MAX_TABLE_VALUES:
            raise NotTabulable(f"the leaf tables would hold {total:,} values (> {MAX_TABLE_VALUES:,}; deep trees)")

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


def intercept(model: dict[str, Any]) -> float:
    """The model's base score in margin (log-odds) space."""
    raw = str(model["learner"]["learner_model_param"]["base_score"]).strip("[]").split(",")[0]
    p = float(raw)
    objective = model["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise NotTabulable(f"objective {objective}")
    if not 0.0 < p < 1.0:
        raise NotTabulable(f"base_score {p} is not a probability")
    return float(np.log(p / (1.0 - p)))
