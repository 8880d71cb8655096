"""The forecasting family's own command: ``ledgerline forecast NAME --horizon N --output FILE`` writes
NAME@champion's precomputed forecast (series_id, ds, yhat, yhat_lower, yhat_upper) to a file.
The CLI (apps/cli.py) adds it through the registry (``register``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_forecast(args: argparse.Namespace) -> int:
    from apps.cli import _settings, check_tracking_server
    from families.spending_forecast.forecast_file import check_request, write_forecast
    from ledgerline.names import check_model_name

    check_model_name(args.name)
    check_request(args.horizon, args.interval, Path(args.output))  # before any server is asked
    settings = _settings()
    check_tracking_server(settings.tracking_uri)
    out = write_forecast(settings, args.name, horizon=args.horizon, interval=args.interval, output=Path(args.output),
                         series=args.series)
    print(f"wrote {out.rows:,} rows ({out.series:,} series, horizon {args.horizon}, {args.interval:g} intervals) "
          f"from {args.name} v{out.version} -> {args.output}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fc = sub.add_parser("forecast", help="write NAME@champion's forecast with intervals to a CSV or Parquet file")
    fc.add_argument("name", help="registered forecasting model")
    fc.add_argument("--horizon", type=int, required=True, help="periods ahead (at most the model's horizon)")
    fc.add_argument("--interval", type=float, default=0.8, help="interval level: 0.8 or 0.95")
    fc.add_argument("--series", action="append", help="only this series (repeatable); default: every series")
    fc.add_argument("--output", required=True, help="the forecast file, .csv or .parquet")
    fc.set_defaults(func=cmd_forecast)
