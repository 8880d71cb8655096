"""Serving benchmark: ``mlflow models serve`` vs Ledgerline's router on the same registered models.

Sets up everything itself in a temporary folder: an ``mlflow server`` (SQLite backend,
local artifacts), models trained, registered and promoted through the real pipeline, and
an app database for the prediction log (a fresh Postgres database when one answers on
127.0.0.1:5432, as in production; SQLite otherwise). Then, one server at a time and with
the same number of workers, it drives

* single-record requests at 8 concurrent connections (requests/s, p50, p99), and
* 100-record and 1,000-record requests (records/s),

for every served family:

* credit-risk: the default credit model (depth 4) and a depth-6 one (``max_depth=6``), so a
  cost cliff with tree depth (reason codes leaving the fast path) shows up here;
* transaction-anomaly: a realistic stream of card transactions (many customers, from
  ``families.transaction_anomaly.data.generate_transactions``, sent in time order, each wrk thread its
  own share), so customer profiles are read and written in Redis on every request. MLflow
  gets the same stream's behavioural feature vectors already computed (its logged signature;
  pyfunc predict = ``detector.score``); ours computes them from the raw transaction and the
  customer's profile, and answers with the reasons;
* transaction-category: generated statement lines, the same records for both; ours answers the
  top 3 with the driving n-grams;
* spending-forecast (``bench-forecast``): 1,000 generated monthly series (``rows`` of this family
  are series x 60 months, so ``--rows`` does not apply; seasonal naive and Theta only: answers come
  from the precomputed table whatever the candidates, and training takes seconds). A row is one
  series' forecast over the whole horizon with its bounds, requests walk the series in a shuffled
  order with intervals 0.8 and 0.95 in turn. Ours answers single series on
  ``POST /v1/models/{name}/forecast`` (``{series_id, horizon, interval}``; not written to the
  prediction log) and 100 and 1,000 series per request on ``/predict`` (the same records, logged);
  MLflow gets the same rows as ``dataframe_records`` (its pyfunc, ``families.spending_forecast.pyfunc``,
  answers each row's series with its points and bounds, like ours), so the batch columns are
  series/s for both. The issue's target for ours is p99 at most 20 ms for single series;
* asset-valuation (``bench-asset``): generated sales with empty cells, each record at an 80 %
  interval; ours answers the value, the interval and the top 3 reasons (TreeSHAP tables) and logs
  it, MLflow's pyfunc (``families.asset_valuation.pyfunc``) the value and the interval;

with ``wrk`` (installed with apt-get when missing), sampling the peak RSS of each
server's whole process tree. Ours runs as in production: prediction log on (with its
write-ahead log: an answer leaves once its log record is written), reason codes on,
profiles in Redis (a key prefix of the bench's own, deleted afterwards). For the default
credit model it then runs again with ``LEDGERLINE_SERVING_LOG_WAL=fsync`` and ``=off`` and
the cost of the write-ahead log is printed, and once more with ``?explain=false`` (answers
without reason codes; log and write-ahead log on): the table's ``ledgerline explain=0`` row.

A batch measurement in which fewer than 5 requests complete (MLflow's forecast pyfunc takes
about a second of CPU per 1,000 series) is repeated for ``max(4 x --duration, 30)`` seconds; a
ratio over a server that completed none is printed as ``nan``, never as a huge number.

Besides the table (one row per server and model: single-record requests/s, p50, p99 in ms,
100- and 1,000-row rows/s, peak RSS of the server's process tree in MB) it prints

* ``write-ahead log``: single-record requests/s, p99 and 1,000-row rows/s per WAL mode;
* ``reason codes``: the default credit model's rows/s in 100- and 1,000-row batches with
  reason codes (the default) and without (``?explain=false``), each over MLflow's (which
  answers probabilities only);
* ``prediction log``: rows in the ``predictions`` table after shutdown against the rows
  answered (the log kept up when it holds at least as many).

One line per model gives ours over MLflow's; the last line is
``throughput_ratio=<x> batch_ratio=<y> p99_ms=<z>``: x the lowest single-record ratio over
the measured families (the default credit model, the anomaly, category, forecast and asset models;
forecast's enters too, as both servers answer the same question, one series' points and
bounds), y the default credit model's 1,000-record batch ratio (reason codes and the
prediction log on; the first measured family's model when credit-risk is not measured), z
the highest p99 of ours over the families (single record, 8 connections).

    python benchmarks/bench_serving.py [--workers 2] [--duration 20] [--rows 20000] [--families spending-forecast]

The machinery is in ``benchmarks/serving_harness.py``, the request bodies in ``benchmarks/serving_bodies.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from serving_bodies import ANOMALY, ASSET, FORECAST, FORECAST_SERIES, MAKERS, STREAM_ROWS
from serving_harness import (
    BATCH,
    BATCHES,
    CONNECTIONS,
    ServerResult,
    count_rows,
    delete_profiles,
    drive,
    drop_app_db,
    ensure_wrk,
    free_port,
    log,
    make_app_db,
    redis_profiles,
    stop_group,
    wait_http,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "bench-credit"
# registered name -> (family, hyper-parameter overrides)
MODELS: dict[str, tuple[str, dict[str, object]]] = {
    MODEL: ("credit-risk", {"model_choice": "xgboost"}),  # the TreeSHAP fast path, not the scorecard
    "bench-credit-d6": ("credit-risk", {"max_depth": 6, "model_choice": "xgboost"}),
    ANOMALY: ("transaction-anomaly", {}),
    "bench-category": ("transaction-category", {}),
    # answers come from the precomputed table, so the candidate models do not change serving cost;
    # without Prophet the 1,000 series train in seconds
    FORECAST: ("spending-forecast", {"models": "snaive,theta"}),
    ASSET: ("asset-valuation", {}),
}
#: each family's model for the summary line (the others are diagnostics, e.g. the depth-6 credit model)
FAMILY_MODELS = {"credit-risk": MODEL, "transaction-anomaly": ANOMALY, "transaction-category": "bench-category",
                 "spending-forecast": FORECAST, "asset-valuation": ASSET}


def _ratio(ours: float, theirs: float) -> float:
    """Ours over MLflow's; nan when MLflow completed no request (no ratio to give, not a huge one)."""
    return ours / theirs if theirs > 0 else math.nan


def _cost(with_wal: float, without: float) -> str:
    """How much lower the throughput is with the write-ahead log than without."""
    if not without:
        return "n/a"
    change = (without - with_wal) / without * 100
    return f"{change:.0f}% lower" if change >= 0 else f"{-change:.0f}% higher (noise: load on the machine)"


@dataclass
class Bench:
    wrk: str
    args: argparse.Namespace
    tmp: Path
    tracking: str
    app_db_url: str
    pg_name: str | None
    profile_url: str
    profile_prefix: str


def run_mlflow(b: Bench, name: str, bodies: dict[int, Path]) -> ServerResult:
    port = free_port()
    bindir = str(Path(sys.executable).parent)  # mlflow's scoring server runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": b.tracking, "PYTHONUNBUFFERED": "1",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlog = b.tmp / f"mlflow-serve-{name}.log"
    with mlog.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion",
             "--env-manager", "local", "-w", str(b.args.workers), "-h", "127.0.0.1", "-p", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=b.tmp,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", 300, proc, mlog)
        log(f"mlflow models serve [{name}] ready on :{port} ({b.args.workers} workers)")
        return drive("mlflow models serve", name, b.wrk, f"http://127.0.0.1:{port}/invocations", bodies, {},
                     proc.pid, b.args.duration, b.tmp)
    finally:
        stop_group(proc)


def run_ours(b: Bench, name: str, bodies: dict[int, Path], wal: str = "write", explain: bool = True) -> ServerResult:
    port = free_port()
    key, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "LEDGERLINE_TRACKING_URI": b.tracking,
        "LEDGERLINE_HOME": str(b.tmp / "home"),
        "LEDGERLINE_APP_DB_URL": b.app_db_url,
        "LEDGERLINE_SERVING_MODELS": name,
        "LEDGERLINE_SERVING_API_KEYS": key,
        "LEDGERLINE_SERVING_ADMIN_KEY": admin,
        "LEDGERLINE_SERVING_LOG_WAL": wal,
        "LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_STORE_URL": b.profile_url,
        "LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_KEY_PREFIX": b.profile_prefix,
        "PYTHONUNBUFFERED": "1",
    }
    olog = b.tmp / f"ledgerline-serve-{name}-wal-{wal}.log"
    started = time.monotonic()
    with olog.open("ab") as fh:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ledgerline"), "serve", "--workers", str(b.args.workers),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=b.tmp,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", 300, proc, olog)
        log(f"ledgerline serve [{name}] ready after {time.monotonic() - started:.1f}s")
        time.sleep(2)  # every worker has loaded (each answers /ready only when its models are in)
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/models", headers={"X-API-Key": key}), timeout=10) as r:
            details = json.loads(r.read())["models"][name]["details"]
        if "reason_code_path" in details:
            what = f"reason codes on via {details['reason_code_path']}"
        elif "interval" in details and "reasons" in details:
            what = f"{details['interval']:.0%} intervals, {details['reasons']} reasons per answer"
        elif "freq" in details:
            what = f"{details['series']} series, freq {details['freq']}, horizon {details['horizon']}"
        else:
            what = f"reasons on, profiles in {details.get('profile_store')}, {details.get('trees')} trees"
        log(f"ledgerline serve ready on :{port} ({b.args.workers} workers, prediction log -> "
            f"{'Postgres' if b.pg_name else 'SQLite'}, write-ahead log {wal}, {what})")
        url = f"http://127.0.0.1:{port}/v1/models/{name}/predict" + ("" if explain else "?explain=false")
        label = "ledgerline serve" if wal == "write" else f"ledgerline (wal {wal})"
        if not explain:
            label = "ledgerline explain=0"
        single = f"http://127.0.0.1:{port}/v1/models/{name}/forecast" if MODELS[name][0] == "spending-forecast" else None
        return drive(label, name, b.wrk, url, bodies, {"X-API-Key": key}, proc.pid, b.args.duration, b.tmp, single)
    finally:
        stop_group(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="workers of each server (default 2)")
    ap.add_argument("--duration", type=int, default=20, help="seconds per measurement (default 20)")
    ap.add_argument("--rows", type=int, default=20_000,
                    help=f"training rows of the credit, anomaly and category models (default 20000); "
                         f"the forecast model trains on {FORECAST_SERIES} monthly series")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--families", default=",".join(FAMILY_MODELS),
                    help=f"comma-separated families to measure, each against MLflow on its model "
                         f"({', '.join(f'{f}: {m}' for f, m in FAMILY_MODELS.items())}); default all")
    args = ap.parse_args()
    wanted = {f.strip() for f in args.families.split(",") if f.strip()}
    unknown = wanted - set(FAMILY_MODELS)
    if unknown or not wanted:
        ap.error(f"--families: unknown {sorted(unknown)}; choose from {sorted(FAMILY_MODELS)}")
    for name in [n for n, (f, _) in MODELS.items() if f not in wanted]:
        del MODELS[name]
    for fam in [f for f in FAMILY_MODELS if f not in wanted]:
        del FAMILY_MODELS[fam]

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    wrk = ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="ledgerline-bench-"))
    log(f"working folder {tmp}")
    from ledgerline.mlflow_server import start_server, stop_server, wait_ready
    from ledgerline.settings import Settings

    mlflow_port = free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    tracking_proc = start_server(
        backend_store_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        artifacts_destination=str(tmp / "artifacts"),
        port=mlflow_port,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log_path=tmp / "mlflow-server.log",
    )
    app_db_url, pg_name = make_app_db(tmp)
    profile_url, profile_prefix, _ = redis_profiles(tmp)
    results: list[ServerResult] = []
    wal_results: dict[str, ServerResult] = {}
    try:
        wait_ready(tracking, timeout=240, proc=tracking_proc, log_path=tmp / "mlflow-server.log")
        os.environ["MLFLOW_TRACKING_URI"] = tracking
        settings = Settings(tracking_uri=tracking, home=tmp / "home", data_dir=tmp / "data", app_db_url=app_db_url)  # type: ignore[call-arg]
        from families.spending_forecast.train import SERIES_LENGTH
        from training.pipeline import TrainRequest, run_training

        for name, (family, overrides) in MODELS.items():
            # a series family's rows are series x months: FORECAST_SERIES series, whatever --rows says
            rows = FORECAST_SERIES * SERIES_LENGTH if family == "spending-forecast" else args.rows
            log(f"training {name} ({family}, {overrides or 'default parameters'}) on {rows} generated rows "
                "through the pipeline")
            result = run_training(settings, TrainRequest(family=family, model_name=name, rows=rows, seed=7,
                                                         params=overrides or None), lambda m: None)
            log(f"{name} v{result.version} is @champion={result.champion}")

        bodies = {family: MAKERS[family](tmp) for family in FAMILY_MODELS}
        b = Bench(wrk, args, tmp, tracking, app_db_url, pg_name, profile_url, profile_prefix)
        for name, (family, _) in MODELS.items():
            ours_bodies, mlflow_bodies = bodies[family]
            results.append(run_mlflow(b, name, mlflow_bodies))
            results.append(run_ours(b, name, ours_bodies))
        lean = None
        if MODEL in MODELS:
            wal_results["write"] = next(r for r in results if r.model == MODEL and r.name == "ledgerline serve")
            for wal in ("fsync", "off"):  # the write-ahead log's cost: single records and 1,000-row batches
                ours_bodies = {n: p for n, p in bodies["credit-risk"][0].items() if n in (1, BATCH)}
                wal_results[wal] = run_ours(b, MODEL, ours_bodies, wal)
            # answers without reason codes (?explain=false), log and write-ahead log on as in production
            lean = run_ours(b, MODEL, bodies["credit-risk"][0], explain=False)
        logged = count_rows(app_db_url)
        answered = sum(r.rows_answered for r in results if r.name == "ledgerline serve") + sum(
            r.rows_answered for w, r in wal_results.items() if w != "write") + (lean.rows_answered if lean else 0)
        log(f"prediction log after shutdown: {logged:,} rows for {answered:,} records in completed answers "
            "(more is fine: wrk stops counting while the last requests are in flight)")
    finally:
        stop_server(tracking_proc)
        drop_app_db(pg_name)
        if profile_url != "memory":
            log(f"deleted {delete_profiles(profile_url, profile_prefix):,} bench profiles from Redis")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'server':<22}{'model':<16}{'1-row req/s':>12}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'100-row rows/s':>16}{'1000-row rows/s':>17}{'peak RSS MB':>13}")
    for r in [*results, *([lean] if lean else [])]:
        print(f"{r.name:<22}{r.model:<16}{r.single.rps:>12,.0f}{r.single.p50_ms:>8.1f}{r.single.p99_ms:>8.1f}"
              f"{r.batches[100].rps * 100:>16,.0f}{r.batch.rps * BATCH:>17,.0f}{r.peak_rss_mb:>13,.0f}")
    errors = sum(r.single.status_errors + r.single.socket_errors
                 + sum(x.status_errors + x.socket_errors for x in r.batches.values())
                 for r in [*results, *wal_results.values(), *([lean] if lean else [])])
    print(f"({args.workers} workers each, {CONNECTIONS} connections, {args.duration}s per measurement, wrk; "
          f"{errors} failed requests; ours logs every /predict answer and returns reason codes / reasons)")
    if ANOMALY in MODELS:
        print(f"{ANOMALY}: {STREAM_ROWS:,}-transaction stream, profiles in "
              f"{'Redis' if profile_url != 'memory' else 'worker memory'}; MLflow gets its feature vectors")
    if FORECAST in MODELS:
        print(f"{FORECAST}: {FORECAST_SERIES:,} monthly series; a row is one series' forecast (all its points and bounds): "
              "ours answers single series on /forecast (not logged), 100 and 1,000 on /predict (logged); "
              "MLflow the same rows on /invocations; batch columns are series/s")
    if wal_results and lean is not None:
        print("write-ahead log (LEDGERLINE_SERVING_LOG_WAL), "
              f"{MODEL}: 1-row req/s, p99 ms, 1000-row rows/s, throughput cost vs off:")
        no_wal = wal_results["off"]
        for mode in ("write", "fsync", "off"):
            r = wal_results[mode]
            print(f"  {mode:<6}{r.single.rps:>8,.0f}{r.single.p99_ms:>8.1f}{r.batch.rps * BATCH:>10,.0f}   "
                  f"{_cost(r.single.rps, no_wal.single.rps)} single-row, {_cost(r.batch.rps, no_wal.batch.rps)} batch")
        ml_credit = next(r for r in results if r.model == MODEL and r.name == "mlflow models serve")
        full = wal_results["write"]
        print(f"reason codes, {MODEL}: rows/s with (default) and without (?explain=false) them, and over MLflow's:")
        for n in BATCHES:
            print(f"  {n:>5}-row batches: {full.batches[n].rps * n:>9,.0f} with, {lean.batches[n].rps * n:>9,.0f} without; "
                  f"batch_ratio {_ratio(full.batches[n].rps, ml_credit.batches[n].rps):.2f} with, "
                  f"{_ratio(lean.batches[n].rps, ml_credit.batches[n].rps):.2f} without")
        print(f"prediction log: {logged:,} rows written for {answered:,} answered rows "
              f"({'kept up' if logged >= answered else f'{answered - logged:,} rows short'})")
    ratios: dict[str, tuple[float, float, float]] = {}
    for name in MODELS:
        ml = next(r for r in results if r.model == name and r.name == "mlflow models serve")
        us = next(r for r in results if r.model == name and r.name == "ledgerline serve")
        ratios[name] = (_ratio(us.single.rps, ml.single.rps), _ratio(us.batch.rps, ml.batch.rps), us.single.p99_ms)
        print(f"{name}: throughput_ratio={ratios[name][0]:.2f} batch_ratio={ratios[name][1]:.2f} "
              f"p99_ms={ratios[name][2]:.1f}")
    per_family = [ratios[m] for m in FAMILY_MODELS.values()]
    batch_model = MODEL if MODEL in ratios else next(iter(FAMILY_MODELS.values()))
    known = [r[0] for r in per_family if not math.isnan(r[0])]
    print(f"throughput_ratio={min(known) if known else math.nan:.2f} batch_ratio={ratios[batch_model][1]:.2f} "
          f"p99_ms={max(r[2] for r in per_family):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
