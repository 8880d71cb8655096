"""The one place Ledgerline talks to Evidently (0.7, the ``evidently.Report`` API, not ``evidently.legacy``).

:func:`data_drift` runs ``Report([DataDriftPreset(...)], include_tests=True)`` on a
reference and a current frame and returns :class:`EvidentlyDrift`, our own type:
per-column method, score, threshold and verdict (from the preset's per-column
tests, so the direction of p-value vs distance methods is Evidently's call), the
dataset verdict (share of drifted columns vs ``drift_share``), the HTML report and
Evidently's own JSON.

The report holds exactly the metrics ``DataDriftPreset`` is made of:
``DriftedColumnsCount`` (the dataset) and one ``ValueDrift`` per column, with
Evidently's own method choice and thresholds. By default they are listed directly
rather than through the preset, because the preset's ``render`` recomputes every
column's drift twice more (the legacy ``DataDriftTable`` and ``DatasetDriftMetric``
behind its summary table), which costs about as much again; ``preset=True`` uses the
preset (same numbers, plus that table in the HTML).

Evidently's cost grows with the rows and is high per column (plotly figures for
each), so frames larger than ``sample_size`` are sampled, uniformly without
replacement and with a fixed seed. The exact, all-row numbers are the PSI in
:mod:`monitoring.psi`; Evidently is the second opinion and the report a person opens.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class EvidentlyDrift:
    dataset_drift: bool
    drifted_count: int
    drifted_share: float
    drift_share_threshold: float
    columns: dict[str, ColumnDrift]
    reference_rows: int  # rows Evidently saw (after sampling)
    current_rows: int
    sampled: bool
    seconds: float
    evidently_version: str
    html: str = field(repr=False)
    report_json: str = field(repr=False)  # Evidently's own JSON (snapshot.json())

    @property
    def drifted_columns(self) -> list[str]:
        return sorted(c for c, d in self.columns.items() if d.drifted)

    def summary(self) -> dict[str, Any]:
        """JSON-able, without the HTML and Evidently's raw JSON."""
        return {
            "dataset_drift": self.dataset_drift,
            "drifted_count": self.drifted_count,
            "drifted_share": round(self.drifted_share, 4),
            "drift_share_threshold": self.drift_share_threshold,
            "drifted_columns": self.drifted_columns,
            "columns": {
                c: {"method": d.method, "score": d.score, "threshold": d.threshold, "drifted": d.drifted}
                for c, d in self.columns.items()
            },
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled": self.sampled,
            "seconds": round(self.seconds, 3),
            "evidently_version": self.evidently_version,
        }


def sample_rows(df: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """At most ``size`` rows, uniformly without replacement (deterministic for a seed)."""
    import numpy as np

    if size is None or len(df) <= size:
        return df
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=size, replace=False))
    return df.iloc[idx].reset_index(drop=True)


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
    drift_share: float = 0.5,
    sample_size: int | None = None,
    seed: int = 42,
    render_html: bool = True,
    preset: bool = False,
) -> EvidentlyDrift:
    """Evidently's data drift of ``current`` against ``reference`` over the named columns."""
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    columns = [*numerical, *categorical]
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"columns {missing} are missing from the reference or current frame")
    ref = sample_rows(reference[columns], sample_size, seed)
    cur = sample_rows(current[columns], sample_size, seed + 1)
    sampled = len(ref) < len(reference) or len(cur) < len(current)
    definition = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
    t0 = time.perf_counter()
    metrics: list[Any] = (
        [DataDriftPreset(columns=columns, drift_share=drift_share)]
        if preset
        else [DriftedColumnsCount(columns=columns, drift_share=drift_share), *(ValueDrift(column=c) for c in columns)]
    )
    report = Report(metrics, include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    raw = snapshot.dict()
    html = snapshot.get_html_str(as_iframe=False) if render_html else ""
    seconds = time.perf_counter() - t0

    scores: dict[str, tuple[str, float, float]] = {}
    drifted_count, drifted_share = 0, 0.0
    for metric in raw["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":ValueDrift"):
            scores[config["column"]] = (
                str(config.get("method")),
                float(metric["value"]),
                float(config.get("threshold") or 0.0),
            )
        elif kind.endswith(":DriftedColumnsCount"):
            drifted_count = int(metric["value"]["count"])
            drifted_share = float(metric["value"]["share"])
    verdicts: dict[str, bool] = {}
    for test in raw["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith(":ValueDrift"):
            verdicts[params["column"]] = test["status"] == "FAIL"
    result_columns = {
        c: ColumnDrift(c, method, score, threshold, verdicts.get(c, False))
        for c, (method, score, threshold) in scores.items()
    }
    result = EvidentlyDrift(
        dataset_drift=drifted_share >= drift_share,
        drifted_count=drifted_count,
        drifted_share=drifted_share,
        drift_share_threshold=drift_share,
        columns=result_columns,
        reference_rows=len(ref),
        current_rows=len(cur),
        sampled=sampled,
        seconds=seconds,
        evidently_version=evidently.__version__,
        html=html,
        report_json=snapshot.json(),
    )
    logger.info(
        "evidently drift: %d/%d columns drifted (share %.2f) on %d/%d rows in %.1fs",
        drifted_count, len(columns), drifted_share, len(ref), len(cur), seconds,
    )
    return result
