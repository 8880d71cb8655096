"""JSON text of table cells and rows without a Python dict per row: the prediction log and the
reason codes of scored files are written column by column.

Each cell is what ``json.dumps`` writes for the value ``DataFrame.to_dict("records")`` gives
(missing: ``null``), so the text parses to the same values as the API's answers and log rows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


_INF = float("inf")


def _json_float(v: float) -> str:
    return float.__repr__(v) if abs(v) != _INF and v == v else "null"  # no NaN or Infinity tokens: JSON has none


def json_floats(values: np.ndarray) -> list[str]:
    """Floats as ``repr`` writes them (what ``json.dumps`` does); NaN and infinities as ``null``."""
    out = list(map(float.__repr__, values.tolist()))
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = "null"
    return out


def json_cells(values: np.ndarray) -> list[str]:
    """JSON text of each value as ``DataFrame.to_dict("records")`` boxes it (missing: ``null``)."""
    kind = values.dtype.kind
    if kind == "f":
        return json_floats(values)
    if kind == "b":
        return ["true" if v else "false" for v in values.tolist()]
    if kind in "iu":
        return [str(v) for v in values.tolist()]
    if kind != "O":  # datetimes and the like: as the API's encoder writes them
        import pandas as pd

        values = pd.Series(values).astype(object).to_numpy()
    from pandas.api.types import infer_dtype

    # Python floats and None (a validated numeric column; pandas calls floats with None "mixed-integer-float")
    if infer_dtype(values, skipna=True) in ("floating", "mixed-integer-float"):
        return json_floats(np.asarray(values, dtype=np.float64))
    cache: dict[str, str] = {}
    out = []
    for v in values.tolist():
        if isinstance(v, str):
            text = cache.get(v)
            if text is None:
                text = cache[v] = json.dumps(v)
        elif v is None:
            text = "null"
        elif isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, float):
            text = _json_float(v)
        elif isinstance(v, int):
            text = str(v)
        else:
            text = _other(v)
        out.append(text)
    return out


def _other(v: Any) -> str:
    import pandas as pd
    from pydantic_core import to_json

    if isinstance(v, np.generic):
        return json_cells(np.asarray([v]))[0]
    try:
        if pd.isna(v):  # pd.NA, NaT
            return "null"
    except (TypeError, ValueError):  # pragma: no cover - not a scalar
        pass
    return to_json(v).decode()


def json_rows(frame: pd.DataFrame) -> list[str]:
    """One JSON object per row of ``frame`` (its columns as keys, in order)."""
    n = len(frame)
    if n == 0:
        return []
    if frame.shape[1] == 0:
        return ["{}"] * n
    keys = [json.dumps(str(c)) + ":" for c in frame.columns]
    cols = [[k + v for v in json_cells(frame.iloc[:, i].to_numpy())] for i, k in enumerate(keys)]
    return ["{" + ",".join(cells) + "}" for cells in zip(*cols, strict=True)]
