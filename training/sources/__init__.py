"""A model's data sources and window policy: where a run's training rows come from (issue 19).

``SourceConfig`` (``config``): the window policy (sliding or expanding), an optional base file and the
sources (``sql``, ``files``, ``predictions``); ``window_interval`` (``window``): the interval a run reads;
``read_window`` (``read``): every source for that interval as one frame, in a deterministic order, with
rows per source. A failing source is a :class:`~ledgerline.errors.SourceError` naming it and the window;
an empty window is :class:`~ledgerline.errors.NothingNew`.
"""

from __future__ import annotations

from ledgerline.errors import NothingNew, SourceError
from training.sources.config import (
    FilesSource,
    PredictionsSource,
    Source,
    SourceConfig,
    SourceConfigError,
    SqlSource,
    Window,
    beside_spec,
    load_source_config,
    source_config,
    source_key,
)
from training.sources.read import WindowRead, read_production, read_window
from training.sources.window import Interval, end_of_day, parse_moment, snapshot_key, window_interval

__all__ = [
    "FilesSource",
    "Interval",
    "NothingNew",
    "PredictionsSource",
    "Source",
    "SourceConfig",
    "SourceConfigError",
    "SourceError",
    "SqlSource",
    "Window",
    "WindowRead",
    "beside_spec",
    "end_of_day",
    "load_source_config",
    "parse_moment",
    "read_production",
    "read_window",
    "snapshot_key",
    "source_config",
    "source_key",
    "window_interval",
]
