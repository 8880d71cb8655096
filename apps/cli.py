"""The ``ledgerline`` command. Logging is configured here, once; errors become one line and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from ledgerline.errors import LedgerlineError, NothingNew, Terminated, ValidationFailed
from ledgerline.families import FAMILIES

# Modules with ``register(subparsers) -> None`` adding subcommands (serve, monitor, ...).
PLUGIN_COMMANDS: tuple[str, ...] = ("apps.monitor_cli", "apps.serve_cli", "apps.dbcli")

EXIT_BAD_INPUT = 2
EXIT_VALIDATION = 3
EXIT_TERMINATED = 128 + signal.SIGTERM


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _settings():  # noqa: ANN202 - imported lazily to keep --help fast
    from ledgerline.settings import Settings

    return Settings()


def masked_uri(uri: str) -> str:
    """``uri`` with the password of its user info replaced by ``***`` (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<an unparsable URI>"
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_tracking_server(uri: str) -> None:
    """Fail fast, before anything is written, when the tracking server is not there.

    Credentials in the URI's user info (or ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``) are sent as basic auth,
    as MLflow's client does; an answer that asks for other credentials (401/403) still proves the server is
    there. The password never appears in a message."""
    if not uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit, urlunsplit

    shown = masked_uri(uri)
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        plain = urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))
    except ValueError as exc:
        raise LedgerlineError(f"the MLflow tracking URI {shown} is not a valid URL ({exc}); fix MLFLOW_TRACKING_URI") from exc
    user = unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = unquote(parts.password) if parts.password else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    request = urllib.request.Request(plain.rstrip("/") + "/health")
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            if resp.status == 200:
                return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return  # the server answers; whether these credentials may write is MLflow's to say, with its message
    except (urllib.error.URLError, OSError, ValueError):
        pass
    raise LedgerlineError(
        f"cannot reach the MLflow tracking server at {shown}; start it (make demo) or set MLFLOW_TRACKING_URI"
    )


def cmd_train(args: argparse.Namespace) -> int:
    # cheap checks first: a wrong name or path is reported before heavy imports and before any server is asked
    from ledgerline.families import family_stem
    from ledgerline.names import check_model_name
    from training.requests import train_request

    family_stem(args.family)  # an unknown family names the known ones
    check_model_name(args.model_name or args.family)
    options = {dest: getattr(args, dest, None) for dest in _family_option_dests()}
    params = _parse_params(args.param)
    # the family's options and the target's, checked as the retrain DAG's params are (one builder)
    req = train_request(
        args.family,
        model_name=args.model_name,
        data=args.data,
        spec_path=args.spec,
        target=args.target,
        positive_label=args.positive_label,
        logical_date=args.logical_date,
        trigger=args.trigger,
        rows=args.rows,
        params=params,
        force=args.force,
        options=options,
        source=args.source,
    )
    if args.source is None and req.sources is not None:
        _progress(f"using {req.sources.origin} (found beside --spec; it names the data sources and the window)")
    if args.data is not None:
        from features.paths import check_input_path

        check_input_path(args.data)
    if args.spec is not None:
        from features.spec import load_partial_spec

        load_partial_spec(Path(args.spec))  # a malformed spec is named before any server is asked
    settings = _settings()
    from training.pipeline import check_params, run_training

    check_params(args.family, settings.seed, params)  # out-of-range hyper-parameters: before any work
    check_tracking_server(settings.tracking_uri)
    try:
        result = run_training(settings, req, _progress)
    except NothingNew as exc:  # an empty window: not an error, nothing registered
        print(f"model {req.name}: {exc}")
        return 0
    if result.skipped:
        print(f"model {result.model_name}: {result.decision.reasons[0]}")
    else:
        champion = f"champion is v{result.champion}" if result.champion else "there is no champion yet"
        print(f"model {result.model_name} v{result.version}: "
              f"{'promoted to @champion' if result.decision.passed else 'not promoted'}; {champion}")
    if result.run_id:
        print(f"run: {settings.tracking_uri.rstrip('/')}/#/experiments/{result.experiment_id}/runs/{result.run_id}")
    return 0


def _family_option_dests() -> list[str]:
    from training.requests import all_train_options

    return [options[0][1].dest for options in all_train_options().values()]


def _add_family_options(parser: argparse.ArgumentParser) -> None:
    """Every registered family's train options (a family refuses the others' in cmd_train)."""
    from training.requests import all_train_options

    for flag, users in all_train_options().items():
        first = users[0][1]
        clash = [name for name, o in users if (o.switch, o.type, o.choices) != (first.switch, first.type, first.choices)]
        if clash:
            raise RuntimeError(f"train option {flag} is declared differently by {[n for n, _ in users]}")
        text = "; ".join(f"{name}: {o.help}" for name, o in users)
        if first.switch:
            parser.add_argument(flag, dest=first.dest, action="store_true", help=text)
        else:
            parser.add_argument(flag, dest=first.dest, type=first.type, choices=first.choices, help=text)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


def _parse_params(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LedgerlineError(f"--param {item!r} is not KEY=VALUE (e.g. --param max_depth=3)")
        out[key.strip()] = value.strip()
    return out


def cmd_rollback(args: argparse.Namespace) -> int:
    from training.pipeline import rollback

    settings = _settings()
    check_tracking_server(settings.tracking_uri)
    rollback(settings, args.name, progress=_progress)
    _tell_serving_api()
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """``ledgerline promote NAME VERSION --reason ...``: through the gate's absolute floors unless --override."""
    import getpass

    from training.pipeline import MIN_REASON_CHARS, manual_promote

    if len((args.reason or "").strip()) < MIN_REASON_CHARS:  # before any server is contacted
        raise LedgerlineError(f"--reason needs a written reason of at least {MIN_REASON_CHARS} characters")
    settings = _settings()
    check_tracking_server(settings.tracking_uri)
    manual_promote(settings, args.name, args.version, reason=args.reason, override=args.override,
                   actor=args.by or f"{getpass.getuser()} (CLI)", progress=_progress)
    _tell_serving_api()
    return 0


def _tell_serving_api() -> None:
    """After a rollback, make the running API reload now (it also notices within one poll, default 5 s).

    Done when LEDGERLINE_SERVING_URL and LEDGERLINE_SERVING_ADMIN_KEY are set; a failure is reported,
    not fatal: the alias has moved and the API's watcher follows it.
    """
    import os
    import urllib.error
    import urllib.request

    url, key = os.environ.get("LEDGERLINE_SERVING_URL"), os.environ.get("LEDGERLINE_SERVING_ADMIN_KEY")
    if not url or not key:
        _progress("the serving API follows @champion within its poll interval (set LEDGERLINE_SERVING_URL and "
                  "LEDGERLINE_SERVING_ADMIN_KEY to make it reload at once)")
        return
    header = os.environ.get("LEDGERLINE_SERVING_API_KEY_HEADER", "X-API-Key")
    req = urllib.request.Request(url.rstrip("/") + "/admin/reload", data=b"", method="POST", headers={header: key})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        _progress(f"note: could not reach the serving API at {url} ({exc}); it follows @champion within its poll interval")
        return
    if status == 200:
        _progress(f"serving API at {url} reloaded @champion")
    elif status == 202:
        _progress(f"serving API at {url} is loading the new @champion (see {url.rstrip('/')}/ready)")
    else:
        _progress(f"note: the serving API at {url} answered {status} to /admin/reload; it follows @champion within its poll interval")


def cmd_ledger(args: argparse.Namespace) -> int:
    from ledgerline import db

    rows = db.ledger(_settings().resolved_app_db_url(), args.name)
    if not rows:
        print(f"no ledger entries for {args.name}")
    for r in rows:
        version = f"v{r['version']}" if r["version"] else "-"
        print(f"{r['decided_at']:%Y-%m-%d %H:%M:%S}  {version:<5} {r['action']:<15} trigger={r['trigger']:<11} "
              f"champion {r['previous_champion'] or '-'} -> {r['champion_after'] or '-'}  {'; '.join(r['reasons'])}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ledgerline.names import check_model_name
    from serving.batch import check_paths, load_champion, offline_settings, score_file

    check_model_name(args.name)
    src, dst = check_paths(args.input, args.output)  # before any server is asked
    if args.chunk_rows < 1:
        raise LedgerlineError(f"--chunk-rows must be at least 1, not {args.chunk_rows}")
    if args.interval is not None and not 0.0 < args.interval < 1.0:
        raise LedgerlineError(f"--interval must be a level between 0 and 1 (e.g. 0.8 or 0.9), not {args.interval}")
    if not 0.0 <= args.max_error_share <= 1.0:
        raise LedgerlineError(f"--max-error-share must be between 0 and 1 (0.01 = 1%), not {args.max_error_share}")
    settings = _settings()
    loaded = load_champion(settings, offline_settings(), args.name)
    options: dict[str, object] = {}
    if args.no_explain:  # the family leaves its explanations (credit: reason codes) out, and skips computing them
        options["explain"] = False
    if args.interval is not None:  # the level of the intervals of a family that gives them
        options["interval"] = args.interval
    if options:
        import dataclasses

        loaded.ctx = dataclasses.replace(loaded.ctx, options={**loaded.ctx.options, **options})

    def progress(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    try:
        progress(f"scoring {src} with {args.name} v{loaded.ctx.version} ({loaded.family.name})")
        report = score_file(loaded, src, dst, chunk_rows=args.chunk_rows, max_error_share=args.max_error_share,
                            progress=progress)
    finally:
        loaded.close()
    print(f"scored {report.scored:,} of {report.rows:,} rows with {args.name} v{loaded.ctx.version} "
          f"in {report.seconds:.1f}s -> {dst}")
    if report.errors_file is not None:
        print(f"{report.rejected:,} rows rejected (within --max-error-share {args.max_error_share:g}); "
              f"rows and reasons: {report.errors_file}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from apps.demo import run_demo

    return run_demo(_settings(), rows=args.rows, progress=_progress)


def cmd_down(args: argparse.Namespace) -> int:
    from apps.demo import stop_all

    stop_all(_settings(), progress=_progress)
    return 0


def add_family_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Each family's own sub-commands: ``families/<stem>/cli.py`` with ``register(subparsers)``, if it has one."""
    from ledgerline.families import family_module

    for family in FAMILIES:
        module = family_module(family, "cli")
        if module is not None:
            module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ledgerline", description="Ledgerline: train, register, promote and serve financial ML models.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="ingest, validate, train, register and gate a model")
    t.add_argument("family", help=f"model family: one of {', '.join(FAMILIES)}")
    t.add_argument("--data", help="CSV or Parquet file; default: the family's seeded generator")
    t.add_argument("--target", "--label", dest="target",
                   help="label column of --data (a family without a target takes it as a label for evaluation and the gate only)")
    t.add_argument("--positive-label", help="value of --target that means the positive class (e.g. default)")
    t.add_argument("--spec", help="dataset spec YAML overriding inferred types, ranges and domains")
    t.add_argument("--model-name", help="registered model name (default: the family name)")
    t.add_argument("--logical-date",
                   help="snapshot date YYYY-MM-DD (default: today, UTC); with --source the data window ends at the "
                   "end of that date (next midnight UTC)")
    t.add_argument("--source", metavar="FILE",
                   help="data sources and window policy (YAML: window, base, sources: sql, files, predictions) "
                   "instead of --data; default: <spec-stem>.sources.yaml beside --spec when there is one")
    t.add_argument("--trigger", default="manual", help="why this run: manual, schedule, drift, performance, feedback")
    t.add_argument("--rows", type=int, default=20_000, help="rows to generate when --data is not given")
    t.add_argument("--param", action="append", metavar="KEY=VALUE", help="hyper-parameter override, repeatable")
    t.add_argument("--force", action="store_true",
                   help="train and register even when @champion came from the same snapshot, spec and parameters")
    _add_family_options(t)
    t.set_defaults(func=cmd_train)

    add_family_commands(sub)

    r = sub.add_parser("rollback", help="move @champion back to the previous champion")
    r.add_argument("name", help="registered model name")
    r.set_defaults(func=cmd_rollback)

    pr = sub.add_parser("promote", help="move @champion to VERSION by hand (through the gate's floors; in the ledger)")
    pr.add_argument("name", help="registered model name")
    pr.add_argument("version", help="the registered version to promote")
    pr.add_argument("--reason", required=True, help="why (written to the promotion ledger)")
    pr.add_argument("--override", action="store_true", help="promote even when the version fails the gate's absolute floors")
    pr.add_argument("--by", help="who asks (default: the OS user)")
    pr.set_defaults(func=cmd_promote)

    lg = sub.add_parser("ledger", help="print the promotion ledger of a model")
    lg.add_argument("name")
    lg.set_defaults(func=cmd_ledger)

    from serving.batch import DEFAULT_CHUNK_ROWS, DEFAULT_MAX_ERROR_SHARE  # light: no heavy imports at module level

    sc = sub.add_parser("score", help="score a CSV or Parquet file with NAME@champion (chunked, offline)")
    sc.add_argument("name", help="registered model name")
    sc.add_argument("--input", required=True, help="CSV or Parquet file; columns that are not model inputs pass through")
    sc.add_argument("--output", required=True, help="the scored file, .csv or .parquet (rejected rows: OUTPUT.errors.csv)")
    sc.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows read, scored and written at a time")
    sc.add_argument("--max-error-share", type=float, default=DEFAULT_MAX_ERROR_SHARE,
                    help="fail when more than this share of rows is rejected (default 0.01 = 1%%)")
    sc.add_argument("--no-explain", action="store_true",
                    help="leave the explanations out (credit: reason codes), as the API's ?explain=false: faster")
    sc.add_argument("--interval", type=float, default=None,
                    help="the level of the prediction intervals, for families that give them (e.g. 0.9; default: "
                    "the version's own)")
    sc.set_defaults(func=cmd_score)

    d = sub.add_parser("demo", help="start the MLflow UI and run the whole loop on generated data")
    d.add_argument("--rows", type=int, default=20_000)
    d.set_defaults(func=cmd_demo)

    dn = sub.add_parser("down", help="stop what the demo started")
    dn.set_defaults(func=cmd_down)

    import importlib

    for module in PLUGIN_COMMANDS:  # each adds its subcommands; keep their top-level imports light
        importlib.import_module(module).register(sub)
    return p


def service_down_message(exc: BaseException) -> str | None:
    """One line for an error of a service the CLI talks to (the app database), or None for anything else."""
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        from ledgerline.settings import Settings

        try:
            url = masked_uri(Settings().resolved_app_db_url())
        except Exception:  # noqa: BLE001 - the message must not fail on bad settings
            url = "LEDGERLINE_APP_DB_URL"
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return (f"the app database at {url} cannot be used ({cause}); start it or set LEDGERLINE_APP_DB_URL")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # no phoning home: the platform runs in closed networks
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command in ("train", "demo") and threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a scheduler's timeout) becomes an exception, so the open MLflow run ends FAILED
        # and nothing is half-registered, exactly as for Ctrl-C
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except ValidationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_VALIDATION
    except LedgerlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a service down: one line naming it, not a traceback (--verbose logs the traceback)
        message = service_down_message(exc)
        if message is None:
            raise
        logging.getLogger(__name__).debug("service error", exc_info=True)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"error: {exc}; the open MLflow run (if any) was marked FAILED and nothing was registered", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
