"""The promotion gate: a family's metric rules (bounds, bands) plus challenger-vs-champion on the
same holdout, within each rule's tolerance.

``decide`` is pure; ``training.pipeline`` evaluates both models, calls it, then writes
the decision to the ledger and the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ledgerline.families import GatePolicy


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]  # every failed check; on a pass, the checks that passed
    challenger: Mapping[str, float]
    champion: Mapping[str, float] | None = None
    champion_version: str | None = None
    notes: list[str] = field(default_factory=list)


def decide(
    challenger: Mapping[str, float],
    policy: GatePolicy,
    *,
    champion: Mapping[str, float] | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    failed: list[str] = []
    passed: list[str] = []
    notes: list[str] = []

    def check(ok: bool, text: str) -> None:
        if text:
            (passed if ok else failed).append(text)

    for rule in policy.rules:
        if rule.metric not in challenger:
            if rule.required:
                failed.append(f"{rule.metric} was not measured on the holdout; the gate cannot pass without it")
            else:
                notes.append(f"{rule.metric} not measured (no labels?); not gated")
            continue
        value = float(challenger[rule.metric])
        check(*rule.check_absolute(value))
        if champion is not None and rule.tolerance is not None and rule.metric in champion:
            check(*rule.check_against(value, float(champion[rule.metric]), f"champion v{champion_version} on the same holdout"))
    return GateDecision(
        passed=not failed,
        reasons=failed or passed,
        challenger=dict(challenger),
        champion=dict(champion) if champion is not None else None,
        champion_version=champion_version,
        notes=notes,
    )
