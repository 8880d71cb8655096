"""The serving side of a model family, and the lookup of a family's plug-in by name.

A family's serving module (``families/<stem>/serve.py``) exposes ``FAMILY``, an object
implementing :class:`ServingFamily`: how a logged model is loaded, which request fields it
takes, the predictor that answers validated records, the answer model shown in OpenAPI,
how an answer becomes flat file columns, and the label codec feedback uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

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

#: A validated record, as the request schema produced it.
Record = Mapping[str, object]


class Predictor(Protocol):
    """One answer per record (the family's JSON object) and the monitored score per record.

    ``explain=False`` (the API's ``?explain=false``): the caller does not want the answers'
    explanations (credit reason codes, anomaly reasons); they come back empty, and a family
    skips computing them where that saves work.
    """

    def __call__(self, records: Sequence[Record], explain: bool = True) -> tuple[list[dict[str, object]], np.ndarray]: ...



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


@runtime_checkable
class ServingFamily(Protocol):
    name: str
    #: the family's answer as OpenAPI shows it (extends PredictionBase)
    answer_model: type[PredictionBase]
    #: flat columns an answer adds to a scored file (``ledgerline score``), in order
    answer_columns: tuple[str, ...]
    #: True when answering changes state (e.g. customer profiles): the loader then never warms
    #: the predictor up with made-up records
    stateful: bool

    def load(self, model_dir: Path) -> object:
        """The model object from a downloaded MLflow model folder."""
        ...

    def request_columns(
        self, signature_inputs: Sequence[Mapping[str, object]], spec: DatasetSpec | None
    ) -> list[Column]:
        """The request fields: usually the signature's inputs with the spec's limits."""
        ...

    def build(self, model: object, ctx: ServingContext) -> tuple[Predictor, dict[str, object]]:
        """The predictor of one loaded version and details shown in ``GET /v1/models``."""
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

    def score_frame(self, model: object, frame: pd.DataFrame, ctx: ServingContext) -> pd.DataFrame:
        """Offline answers for validated rows (``ledgerline score``): the :attr:`answer_columns`, same index.

        ``frame`` holds the request columns, converted as the request schema does (numbers as
        floats, text as str, null as None). A ``stateful`` family gets the whole file's rows at
        once, in file order, and must not touch its online state (e.g. the profile store).
        ``ctx.options["cache"]``, when present, is a dict kept for the run (built pieces may go there).
        """
        ...


def get_serving_family(name: str) -> ServingFamily:
    """The serving plug-in of a registered family."""
    return load_plugin("serving", name, ServingFamily)  # type: ignore[type-abstract]


def family_routers() -> list[APIRouter]:
    """The optional ``router`` of each registered family's ``routes.py`` (corrections, forecasts, ...)."""
    routers = []
    for name in FAMILIES:
        module = family_module(name, "routes")
        if module is not None:
            routers.append(module.router)
    return routers


__all__ = [
    "PredictionBase",
    "family_routers",
    "Predictor",
    "Record",
    "ServingContext",
    "ServingFamily",
    "get_serving_family",
]
