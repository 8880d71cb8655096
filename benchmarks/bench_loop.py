"""Loop benchmark: does the closed loop (weekly retrain, monitoring with late labels, triggered retrains)
keep a credit model good through a concept shift, without registering duplicate versions?

Everything runs in a temporary folder and databases the bench creates and drops: a Postgres bank
database (``applications``, written week by week; outcomes arrive 1-3 weeks after the application),
an app database, an ``mlflow server`` (SQLite backend, local artifacts) and Airflow on the
CeleryExecutor (api-server, scheduler, dag-processor, one ``airflow celery worker``; Postgres
metadata database, the machine's Redis as broker). Four weeks of history, then ``--weeks`` weeks of
traffic with a concept shift from traffic week ``--shift-week`` (see ``loop_data.py``). At the end of
every week (simulated clock: Monday 00:00 UTC):

1. the week's applications go to the bank table and the outcomes known by then are filled in;
2. the week's traffic is scored by the champion of the week (loaded through MLflow,
   ``models:/<name>/<version>`` of ``@champion``; the serving app's credit path is the same model)
   and written to the prediction log at the applications' times; feedback for every served
   prediction whose outcome became known during the week is written with that time;
3. the monitoring DAG runs with logical date Sunday 22:00 (weekly, not daily: each DAG run costs
   tens of seconds of task start-up on this machine) on the late labels; a retrain decision
   triggers the retrain DAG, whose logical date is the decision's, and the bench waits for it;
4. the retrain DAG runs with logical date Sunday 23:00 (the weekly schedule), reading the
   sliding window (21 days) of labelled applications from the bank through the ``sql`` source
   (``LEDGERLINE_SOURCE__CREDIT_RISK``). In a checkout without ``training/sources`` the bench says
   so and falls back to the window query's rows exported to a Parquet file per week (``data_path``
   through the Airflow Variable ``ledgerline_data__credit_risk``).

It prints a row per week (champion version, its ROC-AUC on the week's traffic once all labels are
known, the decisions), then the AUCs of a stale model (trained once on the first window by
``ledgerline train``) and of an oracle (``ledgerline train`` on every post-shift application before
the evaluated weeks, with all their labels), the versions registered and the duplicates (versions
whose snapshot digest, spec and parameters equal their predecessor's, read from MLflow). Last line:

    loop_auc=<x> stale_auc=<y> oracle_auc=<z> versions=<n> duplicate_versions=<d> weeks=<w>

    python benchmarks/bench_loop.py [--weeks 10] [--shift-week 5] [--rows-per-week 3000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import loop_bank as bank  # noqa: E402
from loop_data import week_applications, week_start  # noqa: E402
from serving_harness import drop_app_db, free_port, log, make_app_db  # noqa: E402

MODEL = "bench-loop-credit"
FAMILY = "credit-risk"
HISTORY_WEEKS = 4
WINDOW_DAYS = 21
EVAL_WEEKS = 3
BIN = Path(sys.executable).parent


class Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


class Bench:
    """What the bench started, so that the ``finally`` stops and drops all of it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.databases: list[str] = []
        self.closers: list[Any] = []

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        self.procs.append(proc)

    def database(self, purpose: str) -> str:
        url, name = make_app_db(self.tmp / purpose)
        if name is None:
            raise SystemExit("the loop bench needs Postgres on 127.0.0.1:5432 (bank table, Airflow metadata)")
        self.databases.append(name)
        return url

    def cleanup(self) -> None:
        from ledgerline.mlflow_server import stop_server

        for proc in reversed(self.procs):
            if proc.poll() is None:
                stop_server(proc, timeout=20)
        for close in self.closers:
            close()
        for name in self.databases:
            try:
                drop_app_db(name)
            except Exception as exc:  # noqa: BLE001 - report and go on dropping the others
                log(f"could not drop database {name}: {exc}")


def spec_file(tmp: Path) -> Path:
    from families.credit_risk.data import credit_spec

    path = tmp / "bench-loop-credit.spec.yaml"
    path.write_text(credit_spec(MODEL).to_yaml())
    return path


def has_sources() -> bool:
    """Whether this checkout has data sources (training/sources: ``ledgerline train --source``, the DAG's source)."""
    import importlib.util

    return importlib.util.find_spec("training.sources") is not None


class CliTrain:
    """``ledgerline train`` (the CLI path) on ``data`` (a source config YAML, or a file), in the background."""

    def __init__(self, bench: Bench, env: dict[str, str], model: str, data: Path, spec: Path, day: str) -> None:
        from ledgerline.mlflow_server import start_process

        self.model, self.log_path = model, bench.tmp / f"cli-train-{model}.log"
        how = "--source" if data.suffix == ".yaml" else "--data"
        self.proc = start_process([str(BIN / "ledgerline"), "train", FAMILY, how, str(data), "--spec", str(spec),
                                   "--model-name", model, "--logical-date", day], env=env, log_path=self.log_path)
        bench.track(self.proc)

    def version(self, settings: Any) -> str:
        """Wait for it; the version it registered."""
        from ledgerline.registry import client

        if self.proc.wait() != 0:
            raise SystemExit(f"ledgerline train {self.model} failed:\n{self.log_path.read_text()[-3000:]}")
        return str(max((v.version for v in client(settings).search_model_versions(f"name = '{self.model}'")), key=int))


class Scorer:
    """Champions loaded through MLflow once per version."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], Any] = {}

    def score(self, model: str, version: str, frame: Any) -> Any:
        import mlflow

        from families.credit_risk.data import credit_spec

        key = (model, version)
        if key not in self.models:
            self.models[key] = mlflow.sklearn.load_model(f"models:/{model}/{version}")
        return self.models[key].predict_proba(frame[credit_spec().feature_names])[:, 1]


def champion(settings: Any, model: str) -> str | None:
    from ledgerline.registry import CHAMPION, alias_version, client

    return alias_version(client(settings), model, CHAMPION)


def duplicates(settings: Any, model: str) -> tuple[int, int]:
    """(versions, versions whose snapshot digest, params and logged spec equal their predecessor's)."""
    import hashlib

    from ledgerline import lineage
    from ledgerline.registry import client

    c = client(settings)
    versions = sorted(c.search_model_versions(f"name = '{model}'"), key=lambda v: int(v.version))
    keys = []
    for v in versions:
        run = c.get_run(str(v.run_id))
        with tempfile.TemporaryDirectory() as d:
            spec = hashlib.sha256(Path(c.download_artifacts(str(v.run_id), "data/spec.yaml", d)).read_bytes()).hexdigest()
        keys.append((run.data.tags.get(lineage.SNAPSHOT_DIGEST), tuple(sorted(run.data.params.items())), spec))
    return len(versions), sum(1 for a, b in zip(keys, keys[1:], strict=False) if a == b)


def _auc(y: Any, p: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def run_outcome(trigger: str, ledger_rows: list[dict[str, Any]], skipped: bool) -> str:
    """What one retrain DAG run did, from the ledger rows it wrote (promote, reject, unchanged, nothing-new)."""
    parts = []
    for r in ledger_rows:
        what = {"promote": "promoted", "reject": "rejected"}.get(r["action"], r["action"])
        parts.append(f"{r['trigger']}: v{r['version']} {what}" if r["action"] in ("promote", "reject")
                     else f"{r['trigger']}: {what}")
    if not parts:
        parts.append(f"{trigger}: {'skipped after ingest' if skipped else 'no ledger row'}, nothing registered")
    return "; ".join(parts)


def week_decisions(settings: Any, monitor_at: datetime, outcomes: list[str]) -> str:
    """What the week's monitoring found (from the app database) and what each retrain run did."""
    import sqlalchemy as sa

    from ledgerline import db

    parts = []
    with db.engine_for(settings.resolved_app_db_url()).connect() as conn:
        dec = db.retrain_decisions.c
        row = conn.execute(sa.select(db.retrain_decisions).where(
            dec.model_name == MODEL, dec.decided_at >= monitor_at - timedelta(minutes=1),
            dec.decided_at <= monitor_at + timedelta(minutes=1)).order_by(dec.id.desc())).first()
    if row is not None:
        ev = row.evidence or {}
        drift, perf = ev.get("drift", {}).get("status", "-"), ev.get("performance", {}).get("status", "-")
        verdict = f"retrain:{row.reason}" if row.retrain else (f"suppressed:{row.reason}" if row.suppressed else "no retrain")
        parts.append(f"monitor drift={drift} perf={perf} -> {verdict}")
    return "; ".join(parts + outcomes)


def main() -> int:  # noqa: PLR0915 - the bench's script, step by step
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weeks", type=int, default=10, help="weeks of traffic (default 10)")
    ap.add_argument("--shift-week", type=int, default=5, help="first traffic week after the concept shift (default 5)")
    ap.add_argument("--rows-per-week", type=int, default=3000, help="applications per week (default 3000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = ap.parse_args()
    if not 2 <= args.shift_week <= args.weeks - EVAL_WEEKS + 1:
        raise SystemExit(f"error: --shift-week must be 2..{args.weeks - EVAL_WEEKS + 1} (the last {EVAL_WEEKS} weeks are "
                         "evaluated after the shift)")
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false",
                 "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(k, v)
    t_start = time.monotonic()
    signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="ledgerline-bench-loop-"))
    bench = Bench(tmp)
    log(f"working folder {tmp}")
    last = ""
    try:
        last = run(args, bench, t_start)
        code = 0
    except Terminated:
        log("SIGTERM: stopping everything the bench started")
        code = 143
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
        log(f"elapsed {time.monotonic() - t_start:.0f}s (everything started stopped, databases dropped)")
    if last:
        print(last)  # the result line is the last line
    return code


def run(args: argparse.Namespace, bench: Bench, t_start: float) -> str:  # noqa: PLR0915
    import sqlalchemy as sa
    from loop_airflow import Stack

    from apps.orchestration import MONITORING_DAG_ID, retrain_dag_id, settings_env
    from ledgerline import db
    from ledgerline.mlflow_server import start_server, wait_ready
    from ledgerline.settings import Settings

    tmp = bench.tmp
    mlflow_port = free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    bench.track(start_server(backend_store_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifacts_destination=str(tmp / "artifacts"),
                             port=mlflow_port, log_path=tmp / "mlflow-server.log"))
    app_url, meta_url, bank_url = bench.database("app"), bench.database("meta"), bench.database("bank")
    bank_engine = sa.create_engine(bank_url, poolclass=sa.pool.NullPool)
    bank.create_tables(bank_engine)
    wait_ready(tracking, timeout=240, proc=bench.procs[0], log_path=tmp / "mlflow-server.log")
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    settings = Settings(tracking_uri=tracking, home=tmp / "home", data_dir=tmp / "data", app_db_url=app_url,  # type: ignore[call-arg]
                        artifacts_destination=str(tmp / "artifacts"))
    db.upgrade(app_url)
    app_engine = db.engine_for(app_url)
    spec = spec_file(tmp)
    sql_mode = has_sources()
    loop_source = bank.write_source(tmp / "loop.sources.yaml", bank_url, bank.WINDOW_QUERY,
                                    {"kind": "sliding", "days": WINDOW_DAYS})
    ll_env = {**settings_env(settings),
              "LEDGERLINE_MODEL_NAME__CREDIT_RISK": MODEL,
              "LEDGERLINE_SPEC__CREDIT_RISK": str(spec),
              "LEDGERLINE_MONITORED_MODELS": f"{MODEL}={FAMILY}",
              # outcomes take 1-3 weeks: judge the predictions of 2-3 weeks ago, served by earlier champions too
              "LEDGERLINE_MONITORING_LABEL_WINDOW_DAYS": "14",
              "LEDGERLINE_MONITORING_CURRENT_VERSION_ONLY": "false"}
    if sql_mode:  # every retrain run (weekly or triggered) reads the bank through the sql source
        ll_env["LEDGERLINE_SOURCE__CREDIT_RISK"] = str(loop_source)
    log("weekly retrain data: " + (f"the sql source ({loop_source.name}: sliding {WINDOW_DAYS} days, labelled rows)"
                                   if sql_mode else "FALLBACK, no training/sources in this checkout: the window query's "
                                   "rows exported to a Parquet file per week, given as the Airflow Variable "
                                   "ledgerline_data__credit_risk (data_path)"))
    for k, v in ll_env.items():  # the bench's own calls (and the CLI) see the same settings
        os.environ[k] = v
    cli_env = {**os.environ}
    stack = Stack(tmp / "airflow", meta_url, free_port(), ll_env)
    bench.closers.append(stack.close)
    log("starting Airflow (api-server, scheduler, dag-processor, celery worker) on the CeleryExecutor")
    stack.start(bench.track)
    retrain_id = retrain_dag_id(FAMILY)
    stack.wait_dags([retrain_id, MONITORING_DAG_ID])
    log(f"Airflow ready after {time.monotonic() - t_start:.0f}s")

    frames: dict[int, Any] = {}
    shift = HISTORY_WEEKS + args.shift_week - 1  # absolute week index of the first post-shift week

    def add_week(w: int) -> None:
        frames[w] = week_applications(w, args.rows_per_week, shift_week=shift)
        bank.insert_week(bank_engine, frames[w])

    def window_data(end: datetime) -> Path:
        """The week's training input: the sql source config, or (fallback) the window exported to a file."""
        if sql_mode:
            n = bank.count_window(bank_engine, end - timedelta(days=WINDOW_DAYS), end)
            log(f"  window {end - timedelta(days=WINDOW_DAYS):%Y-%m-%d}..{end:%Y-%m-%d}: {n:,} labelled applications")
            return loop_source
        path = tmp / "windows" / f"{end:%Y-%m-%d}.parquet"
        n = bank.export_window(bank_engine, end - timedelta(days=WINDOW_DAYS), end, path)
        log(f"  window {end - timedelta(days=WINDOW_DAYS):%Y-%m-%d}..{end:%Y-%m-%d}: {n:,} labelled applications")
        return path

    ledger_seen = 0

    def new_ledger_rows() -> list[dict[str, Any]]:
        nonlocal ledger_seen
        rows = db.ledger(app_url, MODEL)
        fresh, ledger_seen = rows[ledger_seen:], len(rows)
        return fresh

    def finished(run_id: str, trigger: str) -> str:
        state = stack.wait_run(retrain_id, run_id)
        if state != "success":
            raise SystemExit(stack.failure(f"retrain run {run_id} {state}: failed tasks {stack.failed_tasks(retrain_id, run_id)}"))
        return run_outcome(trigger, new_ledger_rows(), stack.task_state(retrain_id, run_id, "ingest") == "skipped")

    def retrain(clock: datetime, run_id: str) -> str:
        stack.trigger(retrain_id, run_id, clock - timedelta(hours=1), {"reason": "schedule", "model_name": MODEL})
        return finished(run_id, "schedule")

    # --- history and the first champion
    for w in range(HISTORY_WEEKS):
        add_week(w)
    clock = week_start(HISTORY_WEEKS)
    bank.reveal(bank_engine, clock)
    first_window = window_data(clock)
    if not sql_mode:
        stack.set_variable("ledgerline_data__credit_risk", str(first_window))
    log(f"week 0: first weekly retrain (logical date {clock - timedelta(hours=1):%Y-%m-%d %H:%M}) and the stale model "
        "(ledgerline train on the same window)")
    stale = CliTrain(bench, cli_env, f"{MODEL}-stale", first_window, spec, f"{clock - timedelta(days=1):%Y-%m-%d}")
    first = retrain(clock, "bench-week-00")
    stale_version = stale.version(settings)
    log(f"  champion v{champion(settings, MODEL)}; stale model v{stale_version}; {first}")

    eval_weeks = [HISTORY_WEEKS + t - 1 for t in range(args.weeks - EVAL_WEEKS + 1, args.weeks + 1)]
    oracle: CliTrain | None = None

    def start_oracle() -> CliTrain:
        """The oracle: post-shift applications up to the evaluated weeks, every outcome (known or not)."""
        import pandas as pd

        if sql_mode:  # an expanding window from the shift
            data = bank.write_source(tmp / "oracle.sources.yaml", bank_url, bank.ORACLE_QUERY,
                                     {"kind": "expanding", "start": week_start(shift).date().isoformat()})
        else:
            data = tmp / "oracle.parquet"
            rows = pd.concat([frames[w] for w in range(shift, eval_weeks[0])])
            rows[["application_id", *bank.FEATURES, "default"]].to_parquet(data, index=False)
        log(f"  oracle: ledgerline train (in the background) on the post-shift applications of weeks "
            f"{shift - HISTORY_WEEKS + 1}..{eval_weeks[0] - HISTORY_WEEKS}, every outcome")
        return CliTrain(bench, cli_env, f"{MODEL}-oracle", data, spec, f"{week_start(eval_weeks[0]) - timedelta(days=1):%Y-%m-%d}")

    scorer = Scorer()
    served: list[Any] = []
    table: list[tuple[int, str, float, str]] = []
    for t in range(1, args.weeks + 1):
        w = HISTORY_WEEKS + t - 1
        prev, clock = week_start(w), week_start(w + 1)
        version = champion(settings, MODEL)
        if version is None:
            raise SystemExit(f"{MODEL} has no @champion before traffic week {t}")
        add_week(w)
        if w == eval_weeks[0] - 1:
            oracle = start_oracle()
        arrived = bank.reveal(bank_engine, clock)
        scores = scorer.score(MODEL, version, frames[w])
        served.append(bank.log_served(app_engine, MODEL, version, frames[w], scores))
        labels = sum(bank.send_feedback(app_engine, MODEL, s, prev, clock) for s in served)
        auc = _auc(frames[w]["default"], scores)
        log(f"week {t}{' (shift)' if w == shift else ''}: {len(frames[w]):,} applications scored by v{version}; "
            f"{arrived:,} outcomes arrived, {labels:,} as feedback")
        data = window_data(clock)
        if not sql_mode:
            stack.set_variable("ledgerline_data__credit_risk", str(data))
        monitor_at = clock - timedelta(hours=2)
        before = set(stack.run_ids(retrain_id))
        mon_run = f"bench-monitor-{t:02d}"
        stack.trigger(MONITORING_DAG_ID, mon_run, monitor_at, {})
        if (state := stack.wait_run(MONITORING_DAG_ID, mon_run)) != "success":
            log(f"  monitoring run {state}: failed tasks {stack.failed_tasks(MONITORING_DAG_ID, mon_run)}")
        outcomes = []
        for run_id in sorted(set(stack.run_ids(retrain_id)) - before):
            log(f"  monitoring triggered {run_id}")
            outcomes.append(finished(run_id, run_id.split("__")[0]))
        outcomes.append(retrain(clock, f"bench-week-{t:02d}"))
        decisions = week_decisions(settings, monitor_at, outcomes)
        log(f"  {decisions}")
        table.append((t, version, auc, decisions))

    # --- references: stale (frozen before the shift) and oracle (post-shift only), on the last weeks
    assert oracle is not None
    oracle_version = oracle.version(settings)
    stale_aucs = [_auc(frames[w]["default"], scorer.score(f"{MODEL}-stale", stale_version, frames[w])) for w in eval_weeks]
    oracle_aucs = [_auc(frames[w]["default"], scorer.score(f"{MODEL}-oracle", oracle_version, frames[w])) for w in eval_weeks]
    versions, dups = duplicates(settings, MODEL)

    print()
    print(f"{'week':>4}  {'champion':>8}  {'roc_auc':>7}  decisions at the end of the week")
    for t, version, auc, decisions in table:
        mark = " *" if t == args.shift_week else "  "
        print(f"{t:>4}{mark}{'v' + version:>8}  {auc:>7.3f}  {decisions}")
    print(f"(* the concept shift; ROC-AUC of the week's champion on the week's traffic, all labels known; "
          f"{args.rows_per_week:,} applications a week, outcomes 7-21 days later, training window {WINDOW_DAYS} days)")
    loop_auc = sum(a for _, _, a, _ in table[-EVAL_WEEKS:]) / EVAL_WEEKS
    stale_auc, oracle_auc = sum(stale_aucs) / EVAL_WEEKS, sum(oracle_aucs) / EVAL_WEEKS
    print(f"last {EVAL_WEEKS} weeks: loop {loop_auc:.3f}, stale v{stale_version} {stale_auc:.3f} "
          f"({', '.join(f'{a:.3f}' for a in stale_aucs)}), oracle v{oracle_version} {oracle_auc:.3f} "
          f"({', '.join(f'{a:.3f}' for a in oracle_aucs)})")
    targets = {"loop_auc >= oracle_auc - 0.02": loop_auc >= oracle_auc - 0.02,
               "loop_auc >= stale_auc + 0.03": loop_auc >= stale_auc + 0.03, "duplicate_versions = 0": dups == 0}
    print("targets: " + ", ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in targets.items()))
    return (f"loop_auc={loop_auc:.4f} stale_auc={stale_auc:.4f} oracle_auc={oracle_auc:.4f} versions={versions} "
            f"duplicate_versions={dups} weeks={args.weeks}")


if __name__ == "__main__":
    sys.exit(main())
