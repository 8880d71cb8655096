"""``ledgerline monitor <model-name>``: run the drift and performance jobs and print the decision.

The decision is data, not an error: the command exits 0 whether or not it says retrain.
It exits non-zero only when monitoring could not run (no champion: 2, via LedgerlineError).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime

from ledgerline.errors import LedgerlineError


def _parse_now(value: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--now {value!r} is not an ISO date or time (e.g. 2026-01-12T06:00)") from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def cmd_monitor(args: argparse.Namespace) -> int:
    from apps.cli import check_tracking_server
    from ledgerline.settings import Settings
    from monitoring.jobs import run_monitoring
    from monitoring.settings import MonitoringSettings

    settings = Settings()  # from the environment
    overrides = {}
    if args.window_days is not None:
        overrides["window_days"] = args.window_days
    if args.min_rows is not None:
        overrides["min_current_rows"] = args.min_rows
    try:
        mon = MonitoringSettings(**overrides)
    except ValueError as exc:
        raise LedgerlineError(f"invalid monitoring settings: {exc}") from exc
    check_tracking_server(settings.tracking_uri)
    # With --json, stdout carries the JSON document only: MLflow writes its "View run ... at"
    # links (and any library its own chatter) to stdout, so everything before it goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        decision = run_monitoring(settings, args.model_name, now=args.now, mon=mon)
    if args.json:
        print(json.dumps({
            "decision_id": decision.decision_id,
            "model_name": decision.model_name,
            "model_version": decision.model_version,
            "retrain": decision.retrain,
            "reason": decision.reason,
            "suppressed": decision.suppressed,
            "decided_at": decision.decided_at.isoformat(),
            "evidence": decision.evidence,
        }, indent=2))
        return 0
    print(decision.summary())
    for job in ("drift", "performance"):
        ev = decision.evidence.get(job, {})
        print(f"  {job:<11} {ev.get('status', '-'):<17} {ev.get('message', '')}")
        if ev.get("run_url"):
            print(f"  {'':<11} report: {ev['run_url']}")
    if decision.retrain:
        print(f"  recorded as pending retrain decision #{decision.decision_id} (the retrain DAG acts on it)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    m = subparsers.add_parser(
        "monitor",
        help="run drift and performance monitoring for a model's @champion and print the retrain decision",
        description="Drift (prediction log window vs the champion's training snapshot) and label-based performance; "
        "records the decision where the retrain DAG picks it up. Exits 0 whatever the decision.",
    )
    m.add_argument("model_name", help="registered model name")
    m.add_argument("--window-days", type=float, help="current window length in days (default 7)")
    m.add_argument("--min-rows", type=int, help="fewer predictions than this give 'not enough data' (default 500)")
    m.add_argument("--now", type=_parse_now, help="evaluate as of this UTC time (replays, tests); default: now")
    m.add_argument("--json", action="store_true", help="print the whole decision as JSON (the only output on stdout; progress goes to stderr)")
    m.set_defaults(func=cmd_monitor)
