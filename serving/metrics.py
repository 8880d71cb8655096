"""Prometheus metrics of the serving API.

Each app gets its own registry (several apps can live in one process, e.g. tests). With
several uvicorn workers, ``ledgerline serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, and ``/metrics`` then aggregates every worker's values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

PREFIX = "ledgerline_serving"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The score histogram's bucket bounds as fractions of a family's score range (its ``score_range``; [0, 1] by default).
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SCORE_METRIC = f"{PREFIX}_prediction_score"
SCORE_HELP = "main score of each prediction, bucketed over its family's score range (e.g. a probability of default)"
ROWS_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "prediction requests by model, version and HTTP status",
            ["model", "version", "status"], registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_latency_seconds", "prediction request latency (validation to encoded answer)",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_rows = Histogram(
            f"{PREFIX}_request_rows", "records per prediction request", ["model", "version"],
            buckets=ROWS_BUCKETS, registry=r,
        )
        self.predictions = Counter(f"{PREFIX}_predictions", "records scored", ["model", "version"], registry=r)
        self.scores = ScoreHistograms()
        r.register(self.scores)
        self.errors = Counter(
            f"{PREFIX}_errors", "requests answered with an error, by endpoint and kind", ["endpoint", "kind"], registry=r
        )
        self.feedback = Counter(f"{PREFIX}_feedback", "feedback requests by outcome", ["outcome"], registry=r)
        self.log_queue = Gauge(
            f"{PREFIX}_log_queue_rows", "prediction-log rows waiting to be written", registry=r,
            multiprocess_mode="livesum",
        )
        self.log_capacity = Gauge(
            f"{PREFIX}_log_buffer_capacity_rows", "prediction-log buffer bound (rows)", registry=r,
            multiprocess_mode="livesum",
        )
        self.log_full = Gauge(
            f"{PREFIX}_log_buffer_full", "1 while the prediction-log buffer is full", registry=r,
            multiprocess_mode="livemax",
        )
        self.log_db_up = Gauge(
            f"{PREFIX}_log_database_up", "1 while the prediction log can write to the database", registry=r,
            multiprocess_mode="livemin",
        )
        self.log_written_rows = Counter(f"{PREFIX}_log_written_rows", "prediction-log rows written", registry=r)
        self.log_write_failures = Counter(f"{PREFIX}_log_write_failures", "failed prediction-log writes", registry=r)
        self.log_refused_rows = Counter(
            f"{PREFIX}_log_refused_rows", "rows refused because the buffer was full (action: rejected|dropped)",
            ["action"], registry=r,
        )
        self.registry_up = Gauge(
            f"{PREFIX}_registry_up", "1 when the last check of the tracking server succeeded", registry=r,
            multiprocess_mode="livemin",
        )
        self.registry_errors = Counter(
            f"{PREFIX}_registry_errors", "failed champion checks (tracking server unreachable or erroring)", registry=r
        )
        self.model_loaded = Gauge(
            f"{PREFIX}_model_loaded", "1 for the version each model serves", ["model", "version"], registry=r,
            multiprocess_mode="livemax",
        )
        self.model_load_failures = Counter(
            f"{PREFIX}_model_load_failures", "versions that could not be loaded", ["model"], registry=r
        )
        self.swaps = Counter(f"{PREFIX}_model_swaps", "hot swaps to a new champion", ["model"], registry=r)
        self.model_component = Gauge(
            f"{PREFIX}_model_component",
            "a served model's own machinery, per worker summed (e.g. profile_store_available: workers that reach "
            "the customer profile store; profile_fallback_answers_total: answers given without a profile)",
            ["model", "key"], registry=r, multiprocess_mode="livesum",
        )
        self.log_db_up.set(1)
        self.registry_up.set(1)
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._components: dict[tuple[str, str], tuple[Any, float]] = {}  # (model, key) -> (gauge child, last value)

    # ------------------------------------------------------------ predictions
    def observed(
        self, model: str, version: str, seconds: float, scores: np.ndarray,
        score_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        """One answered request: its latency, rows, and each score in the histogram of the model's
        ``score_range`` (none for a family without a score)."""
        children = self._children.get((model, version))
        if children is None:  # labels() costs a lock and a dict walk: once per model version, not per request
            children = (
                self.requests.labels(model, version, "200"),
                self.latency.labels(model, version),
                self.batch_rows.labels(model, version),
                self.predictions.labels(model, version),
                self.scores.child(model, version, score_range),
            )
            self._children[(model, version)] = children
        ok, latency, rows, predictions, score_hist = children
        n = int(scores.shape[0])
        ok.inc()
        latency.observe(seconds)
        rows.observe(n)
        predictions.inc(n)
        if score_hist is not None:
            observe_many(score_hist, scores)

    # ---------------------------------------------------------- log observer
    def log_written(self, rows: int) -> None:
        self.log_written_rows.inc(rows)

    def log_write_failed(self) -> None:
        self.log_write_failures.inc()

    def log_refused(self, rows: int, dropped: bool) -> None:
        self.log_refused_rows.labels("dropped" if dropped else "rejected").inc(rows)

    def log_state(self, pending_rows: int, capacity: int, full: bool, db_up: bool) -> None:
        self.log_queue.set(pending_rows)
        self.log_capacity.set(capacity)
        self.log_full.set(1 if full else 0)
        self.log_db_up.set(1 if db_up else 0)

    # ------------------------------------------------------------ exposition
    def component_state(self, model: str, values: Mapping[str, float]) -> None:
        """Set the model's component gauges; only values that changed are written.

        Called after every answer (not only when this worker renders ``/metrics``): with several
        workers each one's values live in its own multiprocess file, so a worker that never answers
        ``/metrics`` must still keep its file current. A call with nothing changed costs a few dict
        lookups.
        """
        components = self._components
        for key, value in values.items():
            v = float(value)
            known = components.get((model, key))
            if known is None:
                child = self.model_component.labels(model, key)
            elif known[1] == v:
                continue
            else:
                child = known[0]
            child.set(v)
            components[(model, key)] = (child, v)

    def forget_dead_workers(self) -> list[int]:
        """Drop the live gauges (database up, queue depth, ...) of worker processes that no longer exist.

        A worker that exits cleanly does this itself; one killed hard (``kill -9``, OOM) cannot, and its
        last values would stay in the aggregate for good. Counters keep their totals.
        """
        directory = multiprocess_dir()
        if not self.multiprocess or directory is None:
            return []
        from prometheus_client import multiprocess

        dead = []
        for pid in _pids_in(directory):
            if pid != os.getpid() and not _alive(pid):
                try:
                    multiprocess.mark_process_dead(pid, directory)
                except FileNotFoundError:  # another worker cleaned it at the same moment
                    pass
                dead.append(pid)
        if dead:
            logger.warning("metrics: dropped the live gauges of worker processes that are gone: %s", dead)
        return dead

    def render(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            self.forget_dead_workers()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def score_buckets(score_range: tuple[float, float]) -> tuple[float, ...]:
    """The bucket bounds of a score histogram over ``score_range``: :data:`SCORE_BUCKETS` scaled to it."""
    lo, hi = (float(v) for v in score_range)
    if not lo < hi:
        raise ValueError(f"a score range must rise (low < high), not {score_range}")
    if (lo, hi) == (0.0, 1.0):
        return SCORE_BUCKETS
    return tuple(float(f"{lo + (hi - lo) * f:.6g}") for f in SCORE_BUCKETS)


class ScoreHistograms(Collector):
    """The one score histogram metric, bucketed per model by its family's score range.

    Prometheus allows each series of a histogram its own ``le`` bounds; prometheus_client gives one
    set per metric object, so there is one unregistered :class:`Histogram` per distinct range, and
    this collector exposes them as one metric (``ledgerline_serving_prediction_score``). With
    several workers every histogram writes its own multiprocess files, which aggregate by name.
    """

    def __init__(self) -> None:
        self._by_buckets: dict[tuple[float, ...], Histogram] = {}

    def child(self, model: str, version: str, score_range: tuple[float, float] | None) -> Any:
        """The histogram child of one model version; None when its family has no score."""
        if score_range is None:
            return None
        buckets = score_buckets(score_range)
        hist = self._by_buckets.get(buckets)
        if hist is None:
            hist = self._by_buckets[buckets] = Histogram(
                SCORE_METRIC, SCORE_HELP, ["model", "version"], buckets=buckets, registry=None
            )
        return hist.labels(model, version)

    def describe(self) -> list[Metric]:
        return [Metric(SCORE_METRIC, SCORE_HELP, "histogram")]

    def collect(self) -> Iterator[Metric]:
        out = Metric(SCORE_METRIC, SCORE_HELP, "histogram")
        for hist in self._by_buckets.values():
            for metric in hist.collect():
                out.samples.extend(metric.samples)
        yield out


def observe_many(hist: Any, values: np.ndarray) -> None:
    """Histogram.observe for many values at once (a 1,000-row batch must not cost 1,000 calls)."""
    n = int(values.shape[0])
    if n == 0:
        return
    upper = getattr(hist, "_upper_bounds", None)
    if n < 8 or upper is None or not hasattr(hist, "_buckets") or not hasattr(hist, "_sum"):
        for v in values.tolist():
            hist.observe(v)
        return
    bounds = np.asarray(upper, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for i, c in enumerate(counts.tolist()):
        if c:
            hist._buckets[i].inc(c)
    hist._sum.inc(float(values.sum()))


def _pids_in(directory: str) -> set[int]:
    """PIDs named by the live-gauge files of a multiprocess folder (``gauge_live*_<pid>.db``)."""
    pids = set()
    try:
        names = os.listdir(directory)
    except OSError:
        return set()
    for name in names:
        if name.startswith("gauge_live") and name.endswith(".db"):
            tail = name[:-3].rsplit("_", 1)[-1]
            if tail.isdigit():
                pids.add(int(tail))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
