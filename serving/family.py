"""The serving side of a model family, and the lookup of a family's plug-in by name.

A family's serving module (``families/<stem>/serve.py``) exposes ``FAMILY``, an object
implementing :class:`ServingFamily` (usually a subclass of :class:`ServingFamilyBase`, which
holds the defaults): how a logged model is loaded, which request fields it takes, the
predictor that answers validated records, the answer model shown in OpenAPI, how an answer
becomes flat file columns, which of them is the monitored score and on what scale, and the
label codec feedback uses. Both are generic in the family's model type ``M`` (what
:meth:`~ServingFamily.load` returns and the other hooks receive).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, Field

from ledgerline.families import FAMILIES, family_module, load_plugin

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from fastapi import APIRouter

    from features.labels import OutcomeCodec
    from features.spec import DatasetSpec
    from serving.schema import Column
    from serving.settings import ServingSettings

M = TypeVar("M")

#: A validated record, as the request schema produced it.
Record = Mapping[str, object]
#: The scale of a family's monitored score (the score histograms are bucketed over it); None: no score.
ScoreRange = tuple[float, float] | None
#: The default scale: a probability or a score in [0, 1].
UNIT_RANGE: tuple[float, float] = (0.0, 1.0)


class Predictor(Protocol):
    """One answer per record (the family's JSON object) and the monitored score per record.

    Every predictor takes ``explain`` (the API's ``?explain=false``): when False the caller does
    not want the answers' explanations (credit reason codes, anomaly reasons); they come back
    empty, and a family skips computing them where that saves work. A family without
    explanations accepts the keyword and ignores it.
    """

    def __call__(self, records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]: ...


#: Live gauges of a version's own machinery (e.g. its profile store), exported on ``/metrics``.
Status = Callable[[], Mapping[str, float]]
#: Called with (prediction_id, canonical label) after feedback for the version was recorded.
OnFeedback = Callable[[str, str], None]


@dataclass(frozen=True)
class Built:
    """What :meth:`ServingFamily.build` makes of one loaded version."""

    predictor: Predictor
    #: shown in ``GET /v1/models`` (plain JSON values)
    details: dict[str, object] = field(default_factory=dict)
    #: live gauges of the version's own machinery, read after every answer and by ``/metrics``
    status: Status | None = None
    #: e.g. a categorisation correction becomes a rule at once
    on_feedback: OnFeedback | None = None


class PredictionBase(BaseModel):
    """What every answer carries; a family's answer model extends it with its own fields."""

    prediction_id: str = Field(description="send it back with POST /v1/feedback")
    model: str
    version: str


@dataclass(frozen=True)
class ServingContext:
    """What a family's predictor may use besides the model object."""

    model_name: str
    version: str
    settings: ServingSettings
    spec: DatasetSpec | None
    columns: Sequence[Column]  # the request fields (from request_columns)
    model_dir: Path  # the downloaded model folder (artifacts logged next to the model live here)
    options: Mapping[str, object] = field(default_factory=dict)  # e.g. "app_db_url" (the loader sets it), "cache"

    def cache(self) -> dict[str, object]:
        """The run's cache for offline scoring (``options["cache"]``); a fresh dict when there is none."""
        cache = self.options.get("cache")
        return cache if isinstance(cache, dict) else {}


@runtime_checkable
class ServingFamily(Protocol[M]):
    """Every hook serving, offline scoring and batch jobs call on a family (``M``: its model type)."""

    name: str
    #: the family's answer as OpenAPI shows it (extends PredictionBase)
    answer_model: type[PredictionBase]
    #: flat columns an answer adds to a scored file (``ledgerline score``), in order
    answer_columns: tuple[str, ...]

    @property
    def score_column(self) -> str | None:
        """The answer column holding the monitored score (what the prediction log keeps per row of a batch
        job); None: the family has no score (the log keeps none)."""
        ...

    @property
    def score_range(self) -> ScoreRange:
        """The scale of the monitored score, bucketed by the score histograms on ``/metrics``; None: no score
        histogram (e.g. a forecast, whose values have no common scale)."""
        ...

    #: True when answering changes state (e.g. customer profiles): the loader then never warms
    #: the predictor up with made-up records
    stateful: bool
    #: False when a file of rows is not what the family answers (e.g. a forecast answers horizons per
    #: series): batch jobs (``POST /v1/models/{name}/batches``) are then refused, naming :meth:`instead_of_rows`
    scores_rows: bool

    def instead_of_rows(self, model_name: str) -> str:
        """What to call instead of a batch job of rows, when :attr:`scores_rows` is False (one sentence)."""
        ...

    def load(self, model_dir: Path) -> M:
        """The model object from a downloaded MLflow model folder."""
        ...

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        """The request fields: usually the signature's inputs with the spec's limits."""
        ...

    def build(self, model: M, ctx: ServingContext) -> Built:
        """The predictor of one loaded version, its details for ``GET /v1/models`` and its optional hooks."""
        ...

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        """An answer as the flat values of :attr:`answer_columns`."""
        ...

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        """A request example (OpenAPI, the warm-up); None: the logged input example or a synthetic one."""
        ...

    def label_codec(self, spec: DatasetSpec | None) -> OutcomeCodec:
        """The outcomes ``POST /v1/feedback`` accepts (stored canonically: "1"/"0" for a binary target, the
        category's name for categories; monitoring decodes them)."""
        ...

    def score_frame(self, model: M, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        """Offline answers for validated rows (``ledgerline score``): the :attr:`answer_columns`, same index.

        ``frame`` holds the request columns, converted as the request schema does (numbers as
        floats, text as str, null as None). A ``stateful`` family gets the whole file's rows at
        once, in file order, and must not touch its online state (e.g. the profile store).
        ``ctx.options["cache"]``, when present, is a dict kept for the run (built pieces may go there).
        """
        ...


class ServingFamilyBase(Generic[M]):
    """The defaults of :class:`ServingFamily`; a family's ``serve.py`` subclasses it and overrides what differs.

    A subclass sets :attr:`name`, :attr:`answer_model` and :attr:`answer_columns` and implements
    :meth:`build`; the rest has defaults: the model loaded by :func:`features.model_io.load_model`,
    request fields from the signature with the spec's limits, the first answer column as the
    score in [0, 1], the label codec of the spec's target, answers flattened column by column,
    and offline scoring through the online predictor.
    """

    name: str
    answer_model: type[PredictionBase]
    answer_columns: tuple[str, ...]
    score_range: ScoreRange = UNIT_RANGE
    stateful: bool = False
    scores_rows: bool = True

    def instead_of_rows(self, model_name: str) -> str:
        return f"POST /v1/models/{model_name}/predict"

    @property
    def score_column(self) -> str | None:
        """The first answer column (a family without a score says None)."""
        return self.answer_columns[0] if self.score_range is not None else None

    def load(self, model_dir: Path) -> M:
        from features.model_io import load_model

        return cast(M, load_model(model_dir))

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        from serving.schema import columns_from

        return columns_from(signature_inputs, spec)

    def build(self, model: M, ctx: ServingContext) -> Built:
        raise NotImplementedError(f"the serving family {self.name} does not build a predictor")

    def flatten(self, answer: Mapping[str, object]) -> dict[str, object]:
        return {c: answer.get(c) for c in self.answer_columns}

    def example(self, spec: DatasetSpec | None, columns: Sequence[Column]) -> dict[str, object] | None:
        return None

    def label_codec(self, spec: DatasetSpec | None) -> OutcomeCodec:
        from features.spec import label_codec_of

        return label_codec_of(spec)

    def score_frame(self, model: M, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        """The online predictor's answers, flattened (the predictor is built once per run, in the cache)."""
        import pandas as pd

        cache = ctx.cache()
        key = f"{self.name}:predictor"
        built = cache.get(key)
        if not isinstance(built, Built):
            built = cache[key] = self.build(model, ctx)
        answers, _ = built.predictor(records_of(frame), explain=bool(ctx.options.get("explain", True)))
        return pd.DataFrame([self.flatten(a) for a in answers], index=frame.index, columns=list(self.answer_columns))


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A validated frame's rows as request records (null as None)."""
    return cast(list[dict[str, Any]], frame.astype(object).where(frame.notna(), None).to_dict("records"))


def get_serving_family(name: str) -> ServingFamily[Any]:
    """The serving plug-in of a registered family."""
    family: ServingFamily[Any] = load_plugin("serving", name, cast(type[ServingFamily[Any]], ServingFamily))
    return family


def family_routers() -> list[APIRouter]:
    """The optional ``router`` of each registered family's ``routes.py`` (corrections, forecasts, ...)."""
    routers = []
    for name in FAMILIES:
        module = family_module(name, "routes")
        if module is not None:
            routers.append(module.router)
    return routers


__all__ = [
    "Built",
    "OnFeedback",
    "PredictionBase",
    "Predictor",
    "Record",
    "ScoreRange",
    "ServingContext",
    "ServingFamily",
    "ServingFamilyBase",
    "Status",
    "UNIT_RANGE",
    "family_routers",
    "get_serving_family",
    "records_of",
]
