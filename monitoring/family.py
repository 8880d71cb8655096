"""The monitoring side of a model family, and the lookup of a family's plug-in by name.

A family's monitoring module (``families/<stem>/monitor.py``) exposes ``FAMILY``, an object
implementing :class:`MonitoringFamily` (in practice a subclass of :class:`MonitoringFamilyBase`,
which gives every optional hook its default): which logged inputs drift is measured on, the
monitored score of the reference data, the live metrics computed from feedback labels (decoded
with the family's label codec) and from the prediction log alone, and the rules that turn them
into "degraded". A live metric ``<name>`` is compared with the champion's offline test metric of
the same name (run metric ``test_<name>``).

Every hook the monitoring jobs call is declared here; the jobs read nothing else off a plug-in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, cast, runtime_checkable

from ledgerline.families import MetricRule, load_plugin

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from features.spec import DatasetSpec
    from ledgerline.settings import Settings
    from monitoring.data import Champion
    from monitoring.jobs import JobOutcome
    from monitoring.settings import MonitoringSettings

M = TypeVar("M")

#: the key under which a window answer carries its feedback label so far, for a family with ``window_labels``
WINDOW_LABEL_KEY = "__label__"


class InsufficientLabels(Exception):
    """The labelled window cannot give the family's live metrics (e.g. one class only); the text says why."""


@runtime_checkable
class MonitoringFamily(Protocol):
    name: str
    #: the answer fields (``outputs``) :meth:`live_metrics` and :meth:`window_metrics` read; only these are
    #: loaded from the prediction log (empty: none, and ``live_metrics`` gets ``outputs=None``)
    output_fields: tuple[str, ...]
    #: True: the window checks read feedback (e.g. a correction rate); each answer of the window then
    #: carries its label so far under :data:`WINDOW_LABEL_KEY` (None: none yet)
    window_labels: bool
    #: True: feedback arrives per series and date, not per logged prediction, so the prediction log has
    #: no row inputs to drift on; the drift job is not run and :meth:`performance_job` must give the
    #: performance verdict
    series_feedback: bool

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
        """Checks on the recent prediction log window (e.g. an alert rate band); empty for none."""
        ...

    def window_metrics(
        self, scores: np.ndarray, outputs: Sequence[Mapping[str, object]], baseline: Mapping[str, float]
    ) -> dict[str, float]:
        """Label-free metrics of the window's predictions for :meth:`window_rules` (``baseline``: the champion's
        offline test metrics, e.g. its alert budget); a metric it cannot compute is left out."""
        ...

    def new_labels(self, url: str, model_name: str, since: datetime, until: datetime) -> int:
        """Labels (feedback) of ``model_name`` received in ``[since, until]``: the feedback-volume trigger's
        count (default: rows of the ``feedback`` table; a family whose feedback lives elsewhere counts there)."""
        ...

    def performance_job(
        self,
        settings: Settings,
        model_name: str,
        *,
        now: datetime,
        mon: MonitoringSettings,
        champion: Champion,
    ) -> JobOutcome | None:
        """The family's own performance job (e.g. forecasts against actuals per series), logged and recorded
        like the platform's; None: the platform's job on labelled predictions runs."""
        ...


class MonitoringFamilyBase(Generic[M]):
    """Defaults of the optional hooks of :class:`MonitoringFamily`, generic in the family's model type ``M``.

    A family subclasses it, sets :attr:`name` (and :attr:`output_fields` when its metrics read answers)
    and implements :meth:`monitored_columns`, :meth:`reference_scores`, :meth:`performance_rules` and
    :meth:`live_metrics`; :meth:`load_model` gives its model typed as ``M``.
    """

    name: str
    output_fields: tuple[str, ...] = ()
    window_labels: bool = False
    series_feedback: bool = False

    def load_model(self, model_uri: str) -> M:
        """The logged model at ``model_uri`` (with its own classes importable), as the family's model type."""
        from features.model_io import load_model

        return cast(M, load_model(model_uri))

    def window_rules(self, mon: MonitoringSettings) -> tuple[MetricRule, ...]:
        return ()

    def window_metrics(
        self, scores: np.ndarray, outputs: Sequence[Mapping[str, object]], baseline: Mapping[str, float]
    ) -> dict[str, float]:
        return {}

    def performance_job(
        self,
        settings: Settings,
        model_name: str,
        *,
        now: datetime,
        mon: MonitoringSettings,
        champion: Champion,
    ) -> JobOutcome | None:
        return None

    def new_labels(self, url: str, model_name: str, since: datetime, until: datetime) -> int:
        from monitoring.data import count_feedback

        return count_feedback(url, model_name, since, until)


def get_monitoring_family(name: str) -> MonitoringFamily:
    """The monitoring plug-in of a registered family."""
    return load_plugin("monitoring", name, cast(type[MonitoringFamily], MonitoringFamily))


__all__ = ["WINDOW_LABEL_KEY", "InsufficientLabels", "MonitoringFamily", "MonitoringFamilyBase", "get_monitoring_family"]
