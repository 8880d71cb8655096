"""The promotion gate: absolute floors plus challenger-vs-champion on the same holdout.

``decide`` is pure; ``training.pipeline`` evaluates both models, calls it, then writes
the decision to the ledger and the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ledgerline.settings import GateThresholds


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
    thresholds: GateThresholds,
    *,
    champion: Mapping[str, float] | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    failed: list[str] = []
    passed: list[str] = []

    def check(ok: bool, text: str) -> None:
        (passed if ok else failed).append(text)

    auc, pr, brier = challenger["roc_auc"], challenger["pr_auc"], challenger["brier"]
    check(auc >= thresholds.min_roc_auc, f"roc_auc {auc:.4f} {'>=' if auc >= thresholds.min_roc_auc else '<'} floor {thresholds.min_roc_auc:.4f}")
    check(pr >= thresholds.min_pr_auc, f"pr_auc {pr:.4f} {'>=' if pr >= thresholds.min_pr_auc else '<'} floor {thresholds.min_pr_auc:.4f}")
    check(brier <= thresholds.max_brier, f"brier {brier:.4f} {'<=' if brier <= thresholds.max_brier else '>'} ceiling {thresholds.max_brier:.4f}")
    if champion is not None:
        bar = champion["roc_auc"] - thresholds.tolerance
        ok = auc >= bar
        check(
            ok,
            f"roc_auc {auc:.4f} {'within' if ok else 'worse than'} tolerance {thresholds.tolerance:.4f} "
            f"of champion v{champion_version} ({champion['roc_auc']:.4f}) on the same holdout",
        )
    return GateDecision(
        passed=not failed,
        reasons=failed or passed,
        challenger=dict(challenger),
        champion=dict(champion) if champion is not None else None,
        champion_version=champion_version,
    )
