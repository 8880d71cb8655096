"""The training side of a model family, and the lookup of a family's plug-in by name.

A family's training module (``families/<stem>/train.py``, the stem from
:data:`ledgerline.families.FAMILIES`) exposes ``FAMILY``, an object implementing
:class:`TrainingFamily`. The pipeline, the gate and the DAGs know families only through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from ledgerline.errors import LedgerlineError
from ledgerline.families import FAMILIES, GatePolicy, TargetKind, load_plugin

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from expectations.family import FamilyExpectations
    from features.spec import DatasetSpec, PartialSpec
    from ledgerline.settings import (
        Settings,  # Airflow DAG files import this at parse time: keep pandas and matplotlib out of it
    )
    from training.cards import CardParts
    from training.sources.window import Interval

#: A fitted model as a family's train step returns it. Its type is the family's business (each
#: family's plug-in is a ``TrainingFamilyBase[ItsModel]``); the core only hands it back to the same
#: family (evaluate, report, log_model), so the core sees ``TrainingFamily[Any]``.
M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)
FittedModel = Any


class FamilyParams(Protocol):
    """A family's hyper-parameters: a frozen dataclass with defaults, logged as run params."""

    def as_dict(self) -> dict[str, object]: ...


@dataclass
class Report:
    """What a family logs to the run besides test metrics: figures (PNG), JSON documents, and
    params, metrics and tags of its own (e.g. the credit family's model choice)."""

    figures: dict[str, Figure] = field(default_factory=dict)
    documents: dict[str, dict[str, object]] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainOption:
    """An option of ``ledgerline train`` (and a param of the retrain DAG) that a family takes.

    The option either names a column the family gives a meaning to (``role``: the spec's role it
    fills, e.g. ``text`` or ``timestamp``), or is a setting of the family's spec block
    (``setting``: its key, e.g. ``freq`` in ``spec.series``). ``fixed`` settings are fixed by the
    model's first training (a later run with another value is refused). Several families may take
    the same flag, each with its own role.
    """

    flag: str
    help: str
    role: str | None = None
    setting: str | None = None
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag without a value (store_true); given means True
    fixed: bool = False
    required: bool = False  # with --data, the family needs it
    example: str = ""  # a value for error messages, e.g. "series_id"

    def __post_init__(self) -> None:
        if not self.flag.startswith("--"):
            raise ValueError(f"train option {self.flag!r} must start with '--'")
        if (self.role is None) == (self.setting is None):
            raise ValueError(f"train option {self.flag}: give exactly one of role or setting")

    @property
    def dest(self) -> str:
        """The option's name as an argparse dest and as a DAG param, e.g. ``text_column``."""
        return self.flag.removeprefix("--").replace("-", "_")


def option_flags(options: Sequence[TrainOption]) -> str:
    return ", ".join(o.flag for o in options) if options else "no family options"


@runtime_checkable
class TrainingFamily(Protocol[M]):
    name: str
    target_kind: TargetKind
    #: metrics printed after training and shown in version descriptions, in order
    headline_metrics: tuple[str, ...]
    #: the share of rows :meth:`split` holds out (sizes the per-class row floor of classifiers)
    test_fraction: float
    #: the family-specific options of ``ledgerline train`` (and the retrain DAG's params)
    train_options: tuple[TrainOption, ...]

    # --- data contract ------------------------------------------------------------
    def default_spec(self, model_name: str) -> DatasetSpec:
        """The spec of the family's generated data."""
        ...

    def generate(self, rows: int, seed: int) -> pd.DataFrame:
        """Deterministic, seeded raw data for demos, tests and the default retrain."""
        ...

    def infer_spec(
        self, raw: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
    ) -> DatasetSpec:
        """A spec for a user's table (types inferred, the user's YAML overriding)."""
        ...

    def conform(self, raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        """The data in the spec's shape (labels conformed by the family's codec); DataError on junk."""
        ...

    def split(self, frame: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The deterministic train/test split of a conformed frame (the gate re-creates it)."""
        ...

    # --- pure train / evaluate -------------------------------------------------------
    def params(self, seed: int, overrides: Mapping[str, object] | None) -> FamilyParams:
        """Default hyper-parameters with overrides, type- and range-checked (LedgerlineError)."""
        ...

    def train(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> M: ...

    def evaluate(self, model: M, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]: ...

    def report(
        self, model: M, frame: pd.DataFrame, spec: DatasetSpec, metrics: Mapping[str, float]
    ) -> Report: ...

    # --- gate policy -----------------------------------------------------------------
    def gate_policy(self, settings: Settings) -> GatePolicy:
        """The family's default rules (before per-family and per-model overrides)."""
        ...

    # --- model I/O -------------------------------------------------------------------
    def log_model(self, model: M, frame: pd.DataFrame, spec: DatasetSpec) -> str:
        """Log the model to the active MLflow run; returns its model URI."""
        ...

    def load_model(self, model_uri: str) -> M: ...

    # --- model card --------------------------------------------------------------------
    def card_parts(self, model: M, frame: pd.DataFrame, spec: DatasetSpec, settings: Settings) -> CardParts:
        """The family's parts of a version's model card, on the holdout ``frame`` (see :mod:`training.cards`)."""
        ...

    # --- optional hooks (defaults in TrainingFamilyBase) -----------------------------------
    def expectations(self) -> FamilyExpectations:
        """What the family adds to the platform's expectation suite (default: nothing)."""
        ...

    def augment(self, settings: Settings, model_name: str, raw: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, str]:
        """``raw`` with rows the platform holds for ``model_name`` added (e.g. users' corrections), and a note
        for the lineage saying what was added ("" for nothing; the default adds nothing)."""
        ...

    def lineage(self, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, str]:
        """Extra run tags describing the training snapshot (default: none)."""
        ...

    def production_rows(
        self, settings: Settings, model_name: str, spec: DatasetSpec, labelled: pd.DataFrame, *, interval: Interval
    ) -> pd.DataFrame:
        """Training rows from ``model_name``'s labelled production traffic in ``interval`` (the ``predictions``
        data source): ``labelled`` holds one row per prediction with feedback, the logged inputs as columns
        plus ``training.sources.predictions.META_COLUMNS`` (prediction id, time, version, batch, stored label).
        Return raw rows in the spec's columns. The default: the spec's features from the inputs and its target
        from the label (``training.sources.predictions.default_production_rows``)."""
        ...

    def holds_out_every_class(self, spec: DatasetSpec) -> bool:
        """Whether the holdout must hold enough rows of each class of the target (checked before anything is
        written); the default: for a binary target the model learns."""
        ...

    def check_options(self, given: Mapping[str, Any], has_data: bool) -> dict[str, Any]:
        """The family's train options as given (dest -> value, only those given), checked before any work;
        LedgerlineError names what to fix. The default: they go with ``--data`` (a generator names its own columns)."""
        ...

    def on_champion(self, settings: Settings, model_name: str, version: str, run_id: str | None,
                    progress: Callable[[str], None]) -> str | None:
        """Called when ``version`` is about to become ``@champion`` (a gate pass, a manual promotion, a
        rollback), before the alias moves: prepare what serving needs besides the model (e.g. online
        state rebuilt from the version's training window, :mod:`training.history`). Returns a note for the
        ledger row's reasons (None: nothing to say). It must not raise for an outage of its own machinery:
        the model is fine and the champion moves anyway, so say in the note, loudly, what was not done and
        how to do it later. The default does nothing."""
        ...


class TrainingFamilyBase(Generic[M]):
    """Defaults of the optional :class:`TrainingFamily` hooks; a family's plug-in subclasses it with its
    model class, e.g. ``class CreditRiskFamily(TrainingFamilyBase["Pipeline"])``."""

    name: str
    target_kind: TargetKind
    test_fraction: float = 0.2
    train_options: tuple[TrainOption, ...] = ()

    def holds_out_every_class(self, spec: DatasetSpec) -> bool:
        return self.target_kind == "binary"

    def check_options(self, given: Mapping[str, Any], has_data: bool) -> dict[str, Any]:
        if given and not has_data:
            flags = [o.flag for o in self.train_options if o.dest in given]
            raise LedgerlineError(
                f"{', '.join(flags)} {'goes' if len(flags) == 1 else 'go'} with --data; "
                "without --data the generator's data names its own columns"
            )
        missing = [o for o in self.train_options if o.required and o.dest not in given]
        if has_data and missing:
            example = " ".join(f"{o.flag} {o.example}".strip() for o in self.train_options if o.required)
            raise LedgerlineError(
                f"{self.name} with --data needs {', '.join(o.flag for o in missing)} (e.g. {example})"
            )
        return dict(given)

    def expectations(self) -> FamilyExpectations:
        from expectations.family import NO_EXTRA

        return NO_EXTRA

    def augment(self, settings: Settings, model_name: str, raw: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, str]:
        return raw, ""

    def lineage(self, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, str]:
        return {}

    def on_champion(self, settings: Settings, model_name: str, version: str, run_id: str | None,
                    progress: Callable[[str], None]) -> str | None:
        return None

    def production_rows(
        self, settings: Settings, model_name: str, spec: DatasetSpec, labelled: pd.DataFrame, *, interval: Interval
    ) -> pd.DataFrame:
        from training.sources.predictions import default_production_rows

        return default_production_rows(spec, labelled)


@runtime_checkable
class ChunkedTraining(Protocol[M_co]):
    """Optional: a family whose training splits into independent chunks (e.g. series), so an
    orchestrator (the Airflow retrain DAG) can map one task over each chunk and gather the parts
    into one model version. All three are pure (no MLflow, no database), and
    ``gather([train_chunk(frame[keys in chunk]) for chunk in plan_chunks(frame)])`` is what the
    family's own ``train`` returns for the same frame.
    """

    def plan_chunks(self, frame: pd.DataFrame, spec: DatasetSpec, max_chunks: int) -> list[list[str]]:
        """The keys (e.g. series ids) of each chunk, deterministic for a frame; at most ``max_chunks``."""
        ...

    def chunk_rows(self, frame: pd.DataFrame, spec: DatasetSpec, keys: Sequence[str]) -> pd.DataFrame:
        """The rows of ``frame`` that belong to a chunk's keys (what ``train_chunk`` is given)."""
        ...

    def train_chunk(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> object:
        """Train on one chunk's rows; returns a picklable part (models, backtest scores, forecast rows)."""
        ...

    def gather(self, parts: Sequence[object], spec: DatasetSpec, params: FamilyParams) -> M_co:
        """One model from every chunk's part."""
        ...


def chunked(family: TrainingFamily[M]) -> ChunkedTraining[M] | None:
    """The family's chunked training, or None when it trains in one piece."""
    return family if isinstance(family, ChunkedTraining) else None


def get_family(name: str) -> TrainingFamily[Any]:
    """The training plug-in of a registered family."""
    return load_plugin("training", name, TrainingFamily)  # type: ignore[type-abstract]


def gate_policy(family: TrainingFamily[Any], settings: Settings, model_name: str) -> GatePolicy:
    """The family's rules with the settings' overrides: the family's first, then the model's."""
    policy = family.gate_policy(settings)
    policy = policy.with_overrides(settings.gates.get(family.name))
    if model_name != family.name:
        policy = policy.with_overrides(settings.gates.get(model_name))
    return policy


__all__ = [
    "FAMILIES",
    "ChunkedTraining",
    "FamilyParams",
    "FittedModel",
    "Report",
    "TrainOption",
    "TrainingFamily",
    "TrainingFamilyBase",
    "chunked",
    "gate_policy",
    "get_family",
    "option_flags",
]
