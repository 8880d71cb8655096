"""The registered forecast model: every series' chosen model and a precomputed forecast table with
calibrated 80 % and 95 % intervals, up to the maximum horizon.

It is plain tables (Parquet) and one JSON document in a folder, so serving, monitoring and the
``forecast`` command load it without Prophet or pickles; the per-series model states (Prophet's
own JSON, the Theta and seasonal-naive parameters) travel with it for lineage and refits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ledgerline.errors import DataError

LEVELS = (0.8, 0.95)
TABLE_COLUMNS = ("series_id", "ds", "h", "yhat", "lower_80", "upper_80", "lower_95", "upper_95")


def level_key(level: float) -> str:
    for known in LEVELS:
        if abs(level - known) < 1e-9:
            return str(int(round(known * 100)))
    raise DataError(f"interval level {level} is not offered; use one of {list(LEVELS)}")


@dataclass
class ForecastModel:
    freq: str
    horizon: int
    season: int
    table: pd.DataFrame  # TABLE_COLUMNS, sorted by series_id, h
    holdout: pd.DataFrame  # series_id, ds, y, yhat, yhat_naive, lower_80, upper_80, lower_95, upper_95
    lineage: pd.DataFrame  # series_id, chosen, length, origins, scale, mase_<model> ..., selection_in_sample
    states: pd.DataFrame  # series_id, model, state (JSON text)
    quantiles: dict[str, list[float]]  # "80"/"95" -> normalised half-width per horizon step (forecast table)
    meta: dict[str, Any] = field(default_factory=dict)
    _index: dict[str, tuple[int, int]] | None = field(default=None, repr=False)
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    # --- lookup (serving) -----------------------------------------------------------
    def _build_index(self) -> None:
        ids = self.table["series_id"].to_numpy()
        index: dict[str, tuple[int, int]] = {}
        if len(ids):
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            ends = np.r_[starts[1:], len(ids)]
            for s, e in zip(starts, ends, strict=True):
                index[str(ids[s])] = (int(s), int(e))
        self._index = index
        self._arrays = {c: self.table[c].to_numpy() for c in TABLE_COLUMNS if c != "series_id"}
        self._arrays["ds_text"] = np.asarray(pd.DatetimeIndex(self.table["ds"]).strftime("%Y-%m-%d"), dtype=object)

    @property
    def series_ids(self) -> list[str]:
        if self._index is None:
            self._build_index()
        assert self._index is not None
        return list(self._index)

    def knows(self, series_id: str) -> bool:
        if self._index is None:
            self._build_index()
        assert self._index is not None
        return series_id in self._index

    def points(self, series_id: str, horizon: int, level: float) -> list[dict[str, Any]]:
        """The first ``horizon`` forecast points of a series with the interval at ``level``."""
        if self._index is None:
            self._build_index()
        assert self._index is not None and self._arrays is not None
        key = level_key(level)
        start, end = self._index[series_id]
        stop = min(end, start + horizon)
        a = self._arrays
        lo, hi, yhat, ds = a[f"lower_{key}"], a[f"upper_{key}"], a["yhat"], a["ds_text"]
        return [
            {"ds": ds[i], "yhat": float(yhat[i]), "yhat_lower": float(lo[i]), "yhat_upper": float(hi[i])}
            for i in range(start, stop)
        ]

    def frame(self, horizon: int, level: float, series: list[str] | None = None) -> pd.DataFrame:
        """``series_id, ds, yhat, yhat_lower, yhat_upper`` for every (or the given) series up to ``horizon``."""
        key = level_key(level)
        t = self.table[self.table["h"] <= horizon]
        if series is not None:
            t = t[t["series_id"].isin(series)]
        return pd.DataFrame({
            "series_id": t["series_id"].to_numpy(),
            "ds": pd.DatetimeIndex(t["ds"]).strftime("%Y-%m-%d"),
            "yhat": t["yhat"].to_numpy(),
            "yhat_lower": t[f"lower_{key}"].to_numpy(),
            "yhat_upper": t[f"upper_{key}"].to_numpy(),
        })

    # --- persistence -----------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.table.to_parquet(folder / "table.parquet", index=False)
        self.holdout.to_parquet(folder / "holdout.parquet", index=False)
        self.lineage.to_parquet(folder / "lineage.parquet", index=False)
        self.states.to_parquet(folder / "states.parquet", index=False)
        doc = {"freq": self.freq, "horizon": self.horizon, "season": self.season,
               "quantiles": self.quantiles, "meta": self.meta}
        (folder / "forecast.json").write_text(json.dumps(doc, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ForecastModel:
        folder = Path(folder)
        if not (folder / "forecast.json").exists():
            found = sorted(folder.rglob("forecast.json"))
            if not found:
                raise DataError(f"{folder} holds no forecast model (forecast.json)")
            folder = found[0].parent
        doc = json.loads((folder / "forecast.json").read_text())
        return cls(
            freq=doc["freq"],
            horizon=int(doc["horizon"]),
            season=int(doc["season"]),
            table=pd.read_parquet(folder / "table.parquet"),
            holdout=pd.read_parquet(folder / "holdout.parquet"),
            lineage=pd.read_parquet(folder / "lineage.parquet"),
            states=pd.read_parquet(folder / "states.parquet"),
            quantiles={k: [float(x) for x in v] for k, v in doc["quantiles"].items()},
            meta=doc.get("meta", {}),
        )


def load_forecast_model(source: str | Path) -> ForecastModel:
    """A forecast model from a model URI (``models:/name/3``, ``runs:/...``) or a local model folder."""
    text = str(source)
    if Path(text).exists():
        return ForecastModel.load(Path(text))
    import tempfile

    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp)
        return ForecastModel.load(Path(local))


__all__ = ["LEVELS", "TABLE_COLUMNS", "ForecastModel", "level_key", "load_forecast_model"]
