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
tabulate (at most :data:`~serving.treeshap.cells.GROUP_CELLS` cells each; a shallow tree is one group, a depth-6 tree a
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

from serving.treeshap.cells import BROADCAST_LIMIT, CELL_CHUNK_ROWS, GROUP_CELLS, MAX_CELLS, TreeShapTable
from serving.treeshap.leaves import (
    CHUNK_ROWS,
    MARGIN_TOLERANCE,
    MAX_PATH_FEATURES,
    MAX_TABLE_VALUES,
    TOLERANCE,
    LeafShapTable,
    NotTabulable,
)

__all__ = [
    "BROADCAST_LIMIT",
    "CELL_CHUNK_ROWS",
    "CHUNK_ROWS",
    "GROUP_CELLS",
    "MARGIN_TOLERANCE",
    "MAX_CELLS",
    "MAX_PATH_FEATURES",
    "MAX_TABLE_VALUES",
    "TOLERANCE",
    "LeafShapTable",
    "NotTabulable",
    "TreeShapTable",
]
