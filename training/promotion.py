"""The promotion gate and the champion's moves: score the challenger and the champion on the
challenger's holdout, decide, record (alias, tags, description, model card, ledger); manual
promotion through the gate's floors; rollback to the previous champion."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from features.sources import load_snapshot
from features.spec import DatasetSpec
from ledgerline import db, lineage
from ledgerline.errors import LedgerlineError, RegistryError
from ledgerline.families import family_from_tags
from ledgerline.registry import CHAMPION, alias_version, client, record_gate_in_description, set_version_tags
from ledgerline.settings import Settings
from training import cards
from training.family import TrainingFamily, gate_policy, get_family
from training.gate import GateDecision, decide
from training.runs import Progress, configure_mlflow, log_progress

logger = logging.getLogger(__name__)


def version_family(settings: Settings, name: str, version: str) -> str:
    """The family a registered version records; a version without one is an error, never a default."""
    mv = client(settings).get_model_version(name, version)
    return family_from_tags(mv.tags, f"{name} v{version}")


def _holdout_for_version(
    settings: Settings, name: str, version: str, family: TrainingFamily
) -> tuple[pd.DataFrame, DatasetSpec]:
    """Re-create the challenger's test split from its snapshot and spec (both recorded on the run)."""
    import mlflow

    c = client(settings)
    mv = c.get_model_version(name, version)
    run_id = mv.run_id or mv.tags.get(lineage.RUN_ID)
    if not run_id:
        raise RegistryError(f"{name} v{version} has no source run, so its holdout cannot be re-created")
    run = c.get_run(run_id)
    snapshot_uri = run.data.tags[lineage.SNAPSHOT_URI]
    seed = int(run.data.params.get("split_seed", settings.seed))
    spec_text = mlflow.artifacts.load_text(f"runs:/{run_id}/data/spec.yaml")
    import yaml

    spec = DatasetSpec.from_dict(yaml.safe_load(spec_text), source=f"run {run_id} data/spec.yaml")
    frame = family.conform(load_snapshot(snapshot_uri), spec)
    _, test_df = family.split(frame, spec, seed)
    return test_df, spec


def evaluate_gate(settings: Settings, name: str, version: str) -> GateDecision:
    """Score ``version`` and the current champion on the version's holdout and decide; writes nothing.

    The family comes from the version's registry tag. The decision's ``champion_version`` is
    the champion it was compared with (None: there was none).
    """

    configure_mlflow(settings)
    family = get_family(version_family(settings, name, version))
    c = client(settings)
    test_df, spec = _holdout_for_version(settings, name, version, family)
    challenger_model = family.load_model(f"models:/{name}/{version}")
    challenger_metrics = family.evaluate(challenger_model, test_df, spec)
    champion_version = alias_version(c, name, CHAMPION)
    champion_metrics: dict[str, float] | None = None
    notes: list[str] = []
    if champion_version is not None and champion_version != str(version):
        try:
            champion_family = version_family(settings, name, champion_version)
            if champion_family != family.name:
                raise LedgerlineError(f"it is a {champion_family} model, the challenger a {family.name} model")
            champion_model = family.load_model(f"models:/{name}/{champion_version}")
            champion_metrics = family.evaluate(champion_model, test_df, spec)
        except Exception as exc:  # a champion trained on another schema cannot be compared
            notes.append(f"champion v{champion_version} could not score this holdout: {str(exc).splitlines()[0]}")
    decision = decide(
        challenger_metrics, gate_policy(family, settings, name), champion=champion_metrics, champion_version=champion_version
    )
    if notes:
        decision = GateDecision(False, [*decision.reasons, *notes] if not decision.passed else notes,
                                decision.challenger, None, champion_version, [*decision.notes, *notes])
    return decision


def record_gate(
    settings: Settings,
    name: str,
    version: str,
    decision: GateDecision,
    *,
    trigger: str = "manual",
    run_id: str | None = None,
    progress: Progress = log_progress,
) -> str | None:
    """Act on a gate decision: move ``@champion`` on a pass, tag the version, write the ledger row.

    Returns the champion version after it.
    """
    configure_mlflow(settings)
    c = client(settings)
    champion_version = decision.champion_version
    champion_after = str(version) if decision.passed else champion_version
    notes: list[str] = []
    if decision.passed:
        notes = prepare_champion(settings, name, str(version), progress=progress)
        c.set_registered_model_alias(name, CHAMPION, str(version))
    set_version_tags(
        c,
        name,
        str(version),
        {
            lineage.GATE_DECISION: "promoted" if decision.passed else "rejected",
            lineage.GATE_REASONS: json.dumps(decision.reasons),
            lineage.GATE_CHAMPION_VERSION: champion_version or "none",
        },
    )
    record_gate_in_description(c, name, str(version), passed=decision.passed,
                               champion_version=champion_version, reasons=decision.reasons)
    _write_card(settings, name, str(version), cards.gate_of(decision))
    db.record_decision(
        settings.resolved_app_db_url(),
        model_name=name,
        version=str(version),
        action="promote" if decision.passed else "reject",
        passed=decision.passed,
        reasons=[*decision.reasons, *notes],
        trigger=trigger,
        previous_champion=champion_version,
        champion_after=champion_after,
        challenger_metrics=decision.challenger,
        champion_metrics=decision.champion,
        run_id=run_id,
    )
    verdict = "PROMOTED to @champion" if decision.passed else f"REJECTED (champion stays v{champion_version})"
    progress(f"gate: v{version} {verdict}: " + "; ".join(decision.reasons))
    return champion_after


def prepare_champion(settings: Settings, name: str, version: str, *, progress: Progress = log_progress) -> list[str]:
    """The family's :meth:`~training.family.TrainingFamily.on_champion` for ``version``, called just before
    ``@champion`` moves to it; returns the notes for the ledger row's reasons.

    Never raises for the hook's own failure: the model is fine and the champion moves anyway; the
    note then says loudly that the step was not done.
    """
    family_name = "the family's"
    try:
        family_name = version_family(settings, name, version)
        mv = client(settings).get_model_version(name, str(version))
        run_id = mv.run_id or (mv.tags or {}).get(lineage.RUN_ID)
        note = get_family(family_name).on_champion(settings, name, str(version), run_id, progress)
    except Exception as exc:  # the hook's failure must not stop a promotion of a sound model
        logger.exception("the on-champion step of %s v%s failed", name, version)
        note = (f"WARNING: {family_name} on-champion step for v{version} FAILED and was not done: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        progress(note)
    return [note] if note else []


def _write_card(settings: Settings, name: str, version: str, gate: Mapping[str, Any]) -> None:
    """The version's model card with this gate decision; a failure is logged, never fatal (the card documents)."""
    try:
        cards.write_card(settings, name, version, gate)
    except Exception:
        logger.exception("could not write the model card of %s v%s", name, version)


def gate_and_promote(
    settings: Settings,
    name: str,
    version: str,
    *,
    trigger: str = "manual",
    run_id: str | None = None,
    progress: Progress = log_progress,
) -> tuple[GateDecision, str | None]:
    """Compare ``version`` with the current champion on the same holdout; promote if it passes.

    The decision goes to the ledger and to registry tags whatever it is. Returns the
    decision and the champion version after it. (``evaluate_gate`` + ``record_gate``;
    the Airflow DAG runs them as two tasks.)
    """
    decision = evaluate_gate(settings, name, version)
    champion_after = record_gate(settings, name, version, decision, trigger=trigger, run_id=run_id, progress=progress)
    return decision, champion_after


class PromotionRefused(LedgerlineError):
    """A manual promotion the gate's absolute floors refuse (and no override with a reason was given)."""


class AlreadyChampion(PromotionRefused):
    """A manual promotion of the version that is @champion already: nothing to do (the API answers 409)."""


#: shortest written reason a manual promotion or an override accepts
MIN_REASON_CHARS = 10


def manual_promote(
    settings: Settings,
    name: str,
    version: str,
    *,
    reason: str,
    actor: str,
    override: bool = False,
    progress: Progress = log_progress,
) -> dict[str, Any]:
    """Move ``@champion`` to ``version`` by hand: through the gate's absolute floors (the family's
    rules with the settings' overrides, on the version's recorded test metrics) unless ``override``;
    either way recorded in the ledger as ``manual-promote`` with who asked and why. Returns the ledger row.
    """
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_CHARS:
        raise LedgerlineError(
            f"a manual promotion needs a written reason of at least {MIN_REASON_CHARS} characters (--reason '...')"
        )
    configure_mlflow(settings)
    c = client(settings)
    from mlflow.exceptions import MlflowException

    try:
        mv = c.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model '{name}' has no version {version}; see `ledgerline ledger {name}` or GET /v1/models/{name}") from exc
    family = get_family(family_from_tags(mv.tags, f"{name} v{version}"))
    run_id = mv.run_id or mv.tags.get(lineage.RUN_ID)
    metrics: dict[str, float] = {}
    if run_id:
        metrics = {k.removeprefix("test_"): float(v) for k, v in c.get_run(run_id).data.metrics.items() if k.startswith("test_")}
    floors = decide(metrics, gate_policy(family, settings, name))
    previous = alias_version(c, name, CHAMPION)
    if previous == str(version):
        raise AlreadyChampion(f"{name} v{version} is @champion already; nothing to promote")
    if not floors.passed and not override:
        raise PromotionRefused(
            f"{name} v{version} fails the gate's absolute floors: {'; '.join(floors.reasons)}; "
            "promote anyway only with an explicit override and a written reason (--override)"
        )
    reasons = [f"manual promotion by {actor}: {reason}"]
    if not floors.passed:
        reasons.append("OVERRIDE of the gate's absolute floors: " + "; ".join(floors.reasons))
    else:
        reasons += floors.reasons
    notes = prepare_champion(settings, name, str(version), progress=progress)
    c.set_registered_model_alias(name, CHAMPION, str(version))
    set_version_tags(c, name, str(version), {
        lineage.GATE_DECISION: "manual-promote",
        lineage.GATE_REASONS: json.dumps(reasons),
        lineage.GATE_CHAMPION_VERSION: previous or "none",
    })
    record_gate_in_description(c, name, str(version), passed=True, champion_version=previous, reasons=reasons)
    _write_card(settings, name, str(version), {
        "decision": "MANUAL PROMOTION to @champion" + (" (floors overridden)" if not floors.passed else ""),
        "reasons": reasons, "notes": [], "champion_version": previous,
    })
    row = db.record_decision(
        settings.resolved_app_db_url(), model_name=name, version=str(version), action="manual-promote",
        passed=floors.passed, reasons=[*reasons, *notes], trigger="manual", previous_champion=previous,
        champion_after=str(version), challenger_metrics=metrics, run_id=run_id,
    )
    progress(f"@champion of {name}: v{previous or '-'} -> v{version} (manual promotion by {actor})")
    return row


def rollback(
    settings: Settings,
    name: str,
    *,
    trigger: str = "manual",
    progress: Progress = log_progress,
    actor: str | None = None,
    note: str | None = None,
) -> str:
    """Move ``@champion`` back to the champion before the current one; record it. Returns the new champion."""
    configure_mlflow(settings)
    c = client(settings)
    current = alias_version(c, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model '{name}' has no @champion to roll back; train and promote one first")
    url = settings.resolved_app_db_url()
    rows = db.ledger(url, name)
    previous = None
    for row in reversed(rows):
        if row["champion_after"] == current and row["action"] in ("promote", "manual-promote") and row["version"] == current:
            previous = row["previous_champion"]
            break
    if previous is None:
        raise RegistryError(
            f"model '{name}' v{current} has no earlier champion recorded in the promotion ledger; nothing to roll back to"
        )
    notes = prepare_champion(settings, name, previous, progress=progress)
    c.set_registered_model_alias(name, CHAMPION, previous)
    reason = f"rollback from v{current} to v{previous}"
    if actor:
        reason += f" by {actor}" + (f": {note.strip()}" if note and note.strip() else "")
    set_version_tags(c, name, current, {lineage.ROLLED_BACK_AT: datetime.now(UTC).isoformat()})
    db.record_decision(
        url, model_name=name, version=previous, action="rollback", passed=True, reasons=[reason, *notes],
        trigger=trigger, previous_champion=current, champion_after=previous,
    )
    progress(f"@champion of {name}: v{current} -> v{previous}")
    return previous
