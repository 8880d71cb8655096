"""The monitoring side of a model family, and the lookup of a family's plug-in by name.

A family's monitoring module (``families/<stem>/monitor.py``) exposes ``FAMILY``, an object
implementing :class:`MonitoringFamily`: which logged inputs drift is measured on, the monitored
score of the reference data, the live metrics computed from feedback labels (decoded with the
family's label codec) and from the prediction log alone, and the rules that turn them into
"degraded". A live metric ``<name>`` is compared with the champion's offline test metric of the
same name (run metric ``test_<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ledgerline.families import MetricRule, load_plugin

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from features.spec import DatasetSpec
    from monitoring.settings import MonitoringSettings


class InsufficientLabels(Exception):
    """The labelled window cannot give the family's live metrics (e.g. one class only); the text says why."""


@runtime_checkable
class MonitoringFamily(Protocol):
    name: str
    #: the answer fields (``outputs``) :meth:`live_metrics` and :meth:`window_metrics` read; only these are
    #: loaded from the prediction log (empty: none, and ``live_metrics`` gets ``outputs=None``)
    output_fields: tuple[str, ...]

    def monitored_columns(self, spec: DatasetSpec) -> tuple[list[str], list[str]]:
        """(numeric, categorical) logged inputs that drift is measured on."""
        ...

    def reference_scores(self, model_uri: str, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        """The monitored score of every reference row, as serving logs it."""
        ...

    def performance_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        """Live metric vs the champion's offline test metric of the same name, with tolerance."""
        ...

    def live_metrics(
        self, y: np.ndarray, scores: np.ndarray, outputs: Sequence[Mapping[str, object]] | None
    ) -> dict[str, float]:
        """Metrics of labelled predictions (``y`` decoded by the label codec; ``outputs`` their answers'
        :attr:`output_fields`, None when there are none); InsufficientLabels when impossible."""
        ...

    def window_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        """Checks on the recent prediction log window (e.g. an alert rate band); empty for none. A family
        whose checks read feedback (e.g. a correction rate) sets an attribute ``window_labels = True``:
        each answer then carries its label so far under ``monitoring.data.LABEL_KEY`` (None: none)."""
        ...

    def window_metrics(
        self, scores: np.ndarray, outputs: Sequence[Mapping[str, object]], baseline: Mapping[str, float]
    ) -> dict[str, float]:
        """Label-free metrics of the window's predictions for :meth:`window_rules` (``baseline``: the champion's
        offline test metrics, e.g. its alert budget); a metric it cannot compute is left out."""
        ...


def get_monitoring_family(name: str) -> MonitoringFamily:
    """The monitoring plug-in of a registered family."""
    return load_plugin("monitoring", name, MonitoringFamily)  # type: ignore[type-abstract]


__all__ = ["InsufficientLabels", "MonitoringFamily", "get_monitoring_family"]
