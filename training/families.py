"""Model families. A new family plugs in by adding an entry here with its spec,
data generator, train/evaluate pair and gate thresholds; nothing else changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledgerline.errors import LedgerlineError
from ledgerline.settings import GateThresholds, Settings

if TYPE_CHECKING:  # Airflow DAG files import FAMILIES at parse time: keep pandas out of it
    import pandas as pd

    from features.spec import DatasetSpec


@dataclass(frozen=True)
class Family:
    name: str
    default_spec: Callable[[str], DatasetSpec]
    generate: Callable[[int, int], pd.DataFrame]
    train: Callable[..., Any]
    evaluate: Callable[..., dict[str, float]]
    params: Callable[[int], Any]
    thresholds: Callable[[Settings], GateThresholds]


def _credit() -> Family:
    from features.generator import credit_spec, generate_loan_applications
    from training import credit_risk

    return Family(
        name="credit-risk",
        default_spec=credit_spec,
        generate=lambda n, seed: generate_loan_applications(n, seed),
        train=credit_risk.train,
        evaluate=credit_risk.evaluate,
        params=lambda seed: credit_risk.CreditParams(seed=seed),
        thresholds=lambda s: s.credit_gate,
    )


FAMILIES: dict[str, Callable[[], Family]] = {"credit-risk": _credit}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]()
    except KeyError:
        raise LedgerlineError(f"unknown model family '{name}'; known families: {sorted(FAMILIES)}") from None
