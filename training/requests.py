"""A training request, and one way to build it from what a person or a DAG run gives:
the command line (``ledgerline train``) and the retrain DAG's params both come through
:func:`train_request`, so the checks and their messages are the same everywhere.

A family's own options (``--text-column``, ``--series-column``, ...) are declared by its training
plug-in (:attr:`training.family.TrainingFamily.train_options`); here they are checked against the
chosen family and turned into the spec's roles and settings. Nothing here names a family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerline.errors import LedgerlineError
from ledgerline.families import FAMILIES, TargetKind
from ledgerline.names import check_model_name
from training.family import TrainingFamily, TrainOption, get_family, option_flags
from training.sources.config import SourceConfig, beside_spec, load_source_config, source_config

#: what a target of each kind says about --positive-label: needed (the value that marks the event),
#: needed only with a target (a label for evaluation), or refused (categories, numbers, series values)
POSITIVE_LABEL: dict[TargetKind, str] = {
    "binary": "needed",
    "none": "with target",
    "multiclass": "refused",
    "numeric": "refused",
    "timeseries": "refused",
}
#: a family's target kind in words, for the refusal of --positive-label
PREDICTS: dict[TargetKind, str] = {
    "multiclass": "categories",
    "numeric": "a number",
    "timeseries": "the series' values",
}


@dataclass(frozen=True)
class TrainRequest:
    family: str
    model_name: str | None = None
    data: Path | None = None  # None: the family's seeded generator
    spec_path: Path | None = None
    target: str | None = None
    positive_label: str | None = None
    logical_date: str | None = None
    trigger: str = "manual"
    rows: int = 20_000
    seed: int | None = None
    params: Mapping[str, Any] | None = None  # hyper-parameter overrides, e.g. {"max_depth": 3}
    force: bool = False  # train and register even when the champion came from the same inputs
    roles: Mapping[str, str] | None = None  # column roles from the family's train options, e.g. {"text": "memo"}
    #: settings of the spec's ``series`` block from the family's train options (e.g. {"freq": "MS", "horizon": 12});
    #: "series_column"/"time_column" here are still read as the roles "series"/"timestamp" (callers before roles)
    series: Mapping[str, Any] | None = None
    #: the data sources and window policy (training/sources/); None: ``data`` or the generator
    sources: SourceConfig | None = None
    #: the exclusive end of the run's data window, an ISO datetime (UTC); None: the end of ``logical_date``
    interval_end: str | None = None

    def __post_init__(self) -> None:
        check_model_name(self.name)  # names become folders and registry keys: check before any work

    @property
    def name(self) -> str:
        return self.model_name or self.family


def all_train_options() -> dict[str, list[tuple[str, TrainOption]]]:
    """Every registered family's train options by flag: flag -> [(family, option), ...] (a flag may
    serve several families, each with its own role)."""
    out: dict[str, list[tuple[str, TrainOption]]] = {}
    for name in FAMILIES:
        for option in get_family(name).train_options:
            out.setdefault(option.flag, []).append((name, option))
    return out


def given_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options actually given: None, False (a switch not set) and "" are not given."""
    return {k: v for k, v in values.items() if v is not None and v is not False and v != ""}


def _typed(option: TrainOption, value: Any) -> Any:
    if option.switch:
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    try:
        typed = option.type(value) if isinstance(value, str) else value
    except (TypeError, ValueError) as exc:
        raise LedgerlineError(f"{option.flag} {value!r} is not valid: {exc}") from exc
    if option.choices is not None and str(typed) not in option.choices:
        raise LedgerlineError(f"{option.flag} must be one of {', '.join(option.choices)}, not {typed!r}")
    return typed


def check_family_options(family: TrainingFamily[Any], options: Mapping[str, Any], has_data: bool) -> dict[str, Any]:
    """The family's options from ``options`` (dest -> value), typed and checked by the family; an option
    the family does not take is refused with the options it does take."""
    given = given_options(options)
    takes = {o.dest: o for o in family.train_options}
    foreign = [k for k in given if k not in takes]
    if foreign:
        flag = "--" + foreign[0].replace("_", "-")
        raise LedgerlineError(
            f"{flag} is not an option of {family.name}; {family.name} takes {option_flags(family.train_options)}"
        )
    typed = {k: _typed(takes[k], v) for k, v in given.items()}
    return family.check_options(typed, has_data)


def check_target_options(
    family: TrainingFamily[Any], *, has_data: bool, has_spec: bool, target: str | None, positive_label: str | None
) -> None:
    """--target and --positive-label as the family's target kind wants them; before any work."""
    if not has_data and (target or positive_label):
        raise LedgerlineError("--target/--positive-label go with --data or --source; without them the generator's data is used")
    rule = POSITIVE_LABEL.get(family.target_kind, "needed")
    if rule == "refused" and positive_label is not None:
        what = PREDICTS.get(family.target_kind, "values")
        raise LedgerlineError(f"{family.name} predicts {what}: pass --target COLUMN without --positive-label")
    if rule != "refused" and target is not None and positive_label is None:
        raise LedgerlineError(f"--target {target} needs --positive-label VALUE (the value that marks the event)")
    if has_data and not has_spec and target is None and family.target_kind != "none":
        if rule == "needed":
            raise LedgerlineError("with --data, pass --target COLUMN and --positive-label VALUE (or a --spec file naming them)")
        raise LedgerlineError("with --data, pass --target COLUMN (or a --spec file naming it)")


def train_request(
    family: str,
    *,
    model_name: str | None = None,
    data: str | Path | None = None,
    spec_path: str | Path | None = None,
    target: str | None = None,
    positive_label: str | None = None,
    logical_date: str | None = None,
    trigger: str = "manual",
    rows: int = 20_000,
    seed: int | None = None,
    params: Mapping[str, Any] | None = None,
    force: bool = False,
    options: Mapping[str, Any] | None = None,
    source: SourceConfig | Mapping[str, Any] | str | Path | None = None,
    interval_end: str | None = None,
) -> TrainRequest:
    """The request to train ``family``, checked before any work: the target options for the family's
    target kind, and the family's own ``options`` (dest -> value, e.g. ``{"text_column": "memo"}``;
    None or False for an option not given), which become the spec's roles and settings.

    ``source`` (a source config: a YAML path, a mapping as the DAG's param gives it, or a config) reads the
    run's data window from the sources it declares instead of ``data``; without one, a
    ``<spec-stem>.sources.yaml`` beside ``spec_path`` is used when there is one (and no ``data``).
    ``interval_end`` (ISO datetime) ends the window; default: the end of ``logical_date`` (next midnight UTC).

    LedgerlineError names what to fix. Paths are not checked here (the CLI checks them first).
    """
    plugin = get_family(family)
    has_data = data is not None and str(data) != ""
    sources = source_config(source)
    if sources is not None and has_data:
        raise LedgerlineError("pass --data or --source, not both (a source config may name a fixed file as base:)")
    if sources is None and not has_data:
        found = beside_spec(spec_path)
        sources = load_source_config(found) if found is not None else None
    if interval_end is not None and str(interval_end).strip():
        from training.sources.window import parse_moment

        interval_end = parse_moment(interval_end).isoformat()
    else:
        interval_end = None
    has_data = has_data or sources is not None
    checked = check_family_options(plugin, options or {}, has_data)
    check_target_options(plugin, has_data=has_data, has_spec=bool(spec_path), target=target,
                         positive_label=positive_label)
    by_dest = {o.dest: o for o in plugin.train_options}
    roles = {by_dest[k].role: str(v) for k, v in checked.items() if k in by_dest and by_dest[k].role}
    settings = {by_dest[k].setting: v for k, v in checked.items() if k in by_dest and by_dest[k].setting}
    return TrainRequest(
        family=family,
        model_name=model_name,
        data=Path(data) if has_data and data is not None else None,
        spec_path=Path(spec_path) if spec_path else None,
        target=target,
        positive_label=positive_label,
        logical_date=logical_date,
        trigger=trigger,
        rows=rows,
        seed=seed,
        params=params,
        force=force,
        roles={k: v for k, v in roles.items() if k} or None,
        series={k: v for k, v in settings.items() if k} or None,
        sources=sources,
        interval_end=interval_end,
    )


__all__ = [
    "TrainRequest",
    "all_train_options",
    "check_family_options",
    "check_target_options",
    "given_options",
    "train_request",
]
