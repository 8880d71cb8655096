"""The anomaly family's commands: ``ledgerline profiles load MODEL [--version V]``.

Fills (or refreshes) the online customer profiles from a version's training window, as promotion
does (:mod:`families.transaction_anomaly.profile_fill`): the way to fill them after a promotion
that found Redis down. Found by ``ledgerline`` through the registry (``families.<stem>.cli``);
``register`` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

FAMILY_NAME = "transaction-anomaly"


def cmd_profiles_load(args: argparse.Namespace) -> int:
    from apps.cli import check_tracking_server
    from families.transaction_anomaly.profile_fill import ProfilesNotFilled, fill_profiles
    from ledgerline.errors import LedgerlineError
    from ledgerline.families import family_from_tags
    from ledgerline.names import check_model_name
    from ledgerline.registry import CHAMPION, alias_version, client
    from ledgerline.settings import Settings

    check_model_name(args.name)
    if args.version is not None and not str(args.version).isdigit():
        raise LedgerlineError(f"--version takes a registered version number (e.g. 3), not {args.version!r}")
    settings = Settings()
    check_tracking_server(settings.tracking_uri)
    from mlflow.exceptions import MlflowException

    c = client(settings)
    version = args.version
    if version is None:
        try:
            version = alias_version(c, args.name, CHAMPION)
        except MlflowException as exc:
            raise LedgerlineError(f"model '{args.name}' is not registered") from exc
        if version is None:
            raise LedgerlineError(f"model '{args.name}' has no @champion; pass --version V")
    try:
        mv = c.get_model_version(args.name, str(version))
    except MlflowException as exc:
        raise LedgerlineError(f"model '{args.name}' has no version {version}; see `ledgerline ledger {args.name}`") from exc
    family = family_from_tags(mv.tags, f"{args.name} v{version}")
    if family != FAMILY_NAME:
        raise LedgerlineError(f"{args.name} v{version} is a {family} model; only {FAMILY_NAME} models keep customer profiles")

    def progress(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    report = fill_profiles(settings, args.name, str(version), run_id=mv.run_id, progress=progress)
    if report is None:
        raise ProfilesNotFilled(f"{args.name} v{version} was trained without customer and time roles, "
                                "so it scores without customer profiles; nothing to fill", retryable=False)
    print(report.note)
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    pr = subparsers.add_parser("profiles", help="transaction-anomaly customer profiles in the online store (Redis)")
    sub = pr.add_subparsers(dest="profiles_command", required=True)
    ld = sub.add_parser("load", help="fill (or refresh) MODEL's customer profiles from a version's training window")
    ld.add_argument("name", help="registered transaction-anomaly model")
    ld.add_argument("--version", help="the version whose training window to replay (default: @champion)")
    ld.set_defaults(func=cmd_profiles_load)
