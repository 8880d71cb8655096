"""Batch benchmark: a credit file through the batch API on Airflow vs ``mlflow models predict``.

Sets up everything itself in a temporary folder: an ``mlflow server`` (SQLite backend, local
artifacts = the artifact store), a credit model trained, registered and promoted through the
real pipeline, an app database (a fresh Postgres database when one answers on 127.0.0.1:5432,
else SQLite), Airflow (api-server and scheduler with the LocalExecutor, on a Postgres metadata
database) and ``ledgerline serve``'s app under uvicorn. Then, on the same generated file:

* ours: ``POST /v1/models/{name}/batches`` (the file streamed up), ``GET /v1/batches/{id}``
  polled every second (progress printed), ``GET /v1/batches/{id}/results`` streamed to disk;
  the time runs from the first byte sent to the last byte of the results. Every row also
  goes to the prediction log, and answers carry reason codes.
* MLflow: ``mlflow models predict -m models:/<name>@champion -t csv --env-manager local``.

Peak RSS is sampled per process (every process of ours: the serving app, Airflow's
api-server, scheduler, executor workers and the task). The last line is
``batch_job_ratio=<ours / MLflow rows/s> peak_rss_mb=<largest of our processes>``.

    python benchmarks/bench_batch.py [--rows 1000000] [--chunk-rows 50000] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serving import drop_app_db, free_port, log, make_app_db, stop_group, wait_http  # noqa: E402

MODEL = "bench-batch-credit"
KEY = secrets.token_urlsafe(24)
BIN = Path(sys.executable).parent


class RssSampler:
    """Peak RSS per process of the given process groups, sampled every 0.25 s."""

    def __init__(self) -> None:
        self.groups: dict[int, str] = {}
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def watch(self, pgid: int, name: str) -> None:
        self.groups[pgid] = name

    def start(self) -> RssSampler:
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            procs: dict[int, tuple[int, int, str, Path]] = {}  # pid -> (ppid, pgid, comm, dir)
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    text = stat.read_text()
                    fields = text.rsplit(")", 1)[1].split()
                    procs[int(stat.parent.name)] = (int(fields[1]), int(fields[2]),
                                                    text[text.index("(") + 1: text.rindex(")")], stat.parent)
                except (OSError, ValueError, IndexError):
                    continue
            for pid, (_, _, comm, folder) in procs.items():
                group, seen, cur = None, 0, pid  # a process of a watched group, or a descendant of one (Airflow's
                while cur in procs and seen < 64:  # task processes start sessions of their own)
                    group = self.groups.get(procs[cur][1])
                    if group is not None:
                        break
                    cur, seen = procs[cur][0], seen + 1
                if group is None:
                    continue
                try:
                    rss = next(int(line.split()[1]) for line in (folder / "status").read_text().splitlines()
                               if line.startswith("VmRSS:")) / 1024
                except (OSError, ValueError, StopIteration):
                    continue
                key = f"{group}:{comm}"
                self.peak[key] = max(self.peak.get(key, 0.0), rss)
            self._stop.wait(0.25)

    def largest(self, prefix: str = "") -> tuple[str, float]:
        items = [(k, v) for k, v in self.peak.items() if k.startswith(prefix)]
        return max(items, key=lambda kv: kv[1]) if items else ("-", 0.0)


def start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    out = log_path.open("ab")
    return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def write_file(path: Path, rows: int) -> None:
    """``rows`` generated loan applications, in blocks (the generator's memory stays small)."""
    from families.credit_risk.data import generate_loan_applications

    block = 100_000
    done = 0
    with path.open("w") as f:
        while done < rows:
            n = min(block, rows - done)
            frame = generate_loan_applications(n, seed=1000 + done // block)
            frame["application_id"] = [f"A{done + i:08d}" for i in range(n)]
            # MLflow's schema enforcement refuses an int64 column for a double input: written as 1.0
            ints = [c for c in frame.columns if c != "default" and str(frame[c].dtype).startswith("int")]
            frame[ints] = frame[ints].astype(float)
            frame.to_csv(f, index=False, header=done == 0)
            done += n


def airflow_env(settings: Any, tmp: Path, port: int, meta_url: str) -> dict[str, str]:
    from apps.orchestration import settings_env

    home = tmp / "airflow"
    home.mkdir(exist_ok=True)
    (home / "passwords.json").write_text(json.dumps({"bench": "bench-password"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "LEDGERLINE_"))}
    env.update(settings_env(settings))
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "bench:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "LEDGERLINE_RETRAIN_SCHEDULE": "none",
        "LEDGERLINE_MONITOR_SCHEDULE": "none",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def upload(url: str, path: Path) -> dict[str, Any]:
    """The file as the body of the POST, streamed from disk (http.client sends a file object in blocks)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    with path.open("rb") as f:
        conn.request("POST", f"/v1/models/{MODEL}/batches", body=f,
                     headers={"X-API-Key": KEY, "Content-Type": "text/csv", "Content-Length": str(path.stat().st_size)})
        resp = conn.getresponse()
        body = resp.read()
    if resp.status != 202:
        raise SystemExit(f"the batch was refused: HTTP {resp.status} {body[:500]!r}")
    return dict(json.loads(body))


def get(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"X-API-Key": KEY})
    with urllib.request.urlopen(req, timeout=60) as r:
        return dict(json.loads(r.read()))


def download(url: str, dst: Path) -> int:
    req = urllib.request.Request(url, headers={"X-API-Key": KEY})
    n = 0
    with urllib.request.urlopen(req, timeout=600) as r, dst.open("wb") as f:
        while block := r.read(1 << 20):
            f.write(block)
            n += len(block)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the credit file (default 1000000)")
    ap.add_argument("--chunk-rows", type=int, default=20_000, help="rows per committed chunk (default 20000)")
    ap.add_argument("--train-rows", type=int, default=20_000, help="training rows (default 20000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false",
                 "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(k, v)
    tmp = Path(tempfile.mkdtemp(prefix="ledgerline-bench-batch-"))
    log(f"working folder {tmp}")
    from ledgerline.mlflow_server import start_server, stop_server, wait_ready
    from ledgerline.settings import Settings

    mlflow_port = free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    tracking_proc = start_server(backend_store_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifacts_destination=str(tmp / "artifacts"),
                                 port=mlflow_port, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                 log_path=tmp / "mlflow-server.log")
    app_db_url, pg_name = make_app_db(tmp)
    meta_url, meta_name = make_app_db(tmp / "meta")
    procs: list[subprocess.Popen[bytes]] = []
    rss = RssSampler().start()
    try:
        if meta_name is None:
            raise SystemExit("Airflow's LocalExecutor needs a Postgres metadata database; start Postgres on 127.0.0.1:5432")
        wait_ready(tracking, timeout=240, proc=tracking_proc, log_path=tmp / "mlflow-server.log")
        os.environ["MLFLOW_TRACKING_URI"] = tracking
        af_port, serve_port = free_port(), free_port()
        settings = Settings(tracking_uri=tracking, home=tmp / "home", data_dir=tmp / "data", app_db_url=app_db_url,  # type: ignore[call-arg]
                            artifacts_destination=str(tmp / "artifacts"), airflow_url=f"http://127.0.0.1:{af_port}",
                            airflow_user="bench", airflow_password="bench-password")
        from training.pipeline import TrainRequest, run_training

        log(f"training {MODEL} on {args.train_rows:,} generated rows through the pipeline")
        result = run_training(settings, TrainRequest(family="credit-risk", model_name=MODEL, rows=args.train_rows, seed=7),
                              lambda m: None)
        log(f"{MODEL} v{result.version} is @champion={result.champion}")
        data = tmp / "loans.csv"
        log(f"writing {args.rows:,} rows to {data}")
        write_file(data, args.rows)
        log(f"{data.stat().st_size / 1e6:,.0f} MB")

        env = airflow_env(settings, tmp, af_port, meta_url)
        for step in (["db", "migrate"], ["dags", "reserialize"]):
            with (tmp / "airflow-setup.log").open("ab") as out:
                if subprocess.run([str(BIN / "airflow"), *step], env=env, stdout=out, stderr=subprocess.STDOUT).returncode:
                    raise SystemExit(f"airflow {' '.join(step)} failed:\n{(tmp / 'airflow-setup.log').read_text()[-3000:]}")
        for name in ("api-server", "scheduler"):
            procs.append(start([str(BIN / "airflow"), name], env, tmp / f"airflow-{name}.log"))
            rss.watch(procs[-1].pid, f"airflow {name}")
        wait_http(f"http://127.0.0.1:{af_port}/api/v2/monitor/health", 240, procs[0], tmp / "airflow-api-server.log")
        serve_env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")},
                     "LEDGERLINE_SERVING_MODELS": MODEL, "LEDGERLINE_SERVING_API_KEYS": KEY,
                     "LEDGERLINE_SERVING_ADMIN_KEY": secrets.token_urlsafe(24),
                     "LEDGERLINE_SERVING_BATCH_CHUNK_ROWS": str(args.chunk_rows),
                     "LEDGERLINE_AIRFLOW_URL": settings.airflow_url, "LEDGERLINE_AIRFLOW_USER": "bench",
                     "LEDGERLINE_AIRFLOW_PASSWORD": "bench-password"}
        procs.append(start([sys.executable, "-m", "uvicorn", "--factory", "serving.app:app_from_env", "--host", "127.0.0.1",
                            "--port", str(serve_port)], serve_env, tmp / "serve.log"))
        rss.watch(procs[-1].pid, "serving")
        url = f"http://127.0.0.1:{serve_port}"
        wait_http(f"{url}/ready", 240, procs[-1], tmp / "serve.log")

        # --- ours
        log(f"ours: POST {data.name} to /v1/models/{MODEL}/batches")
        t0 = time.perf_counter()
        job = upload(url, data)
        log(f"  accepted in {time.perf_counter() - t0:.1f}s: batch {job['batch_id']} ({job['rows_total']:,} rows)")
        last_change, last_done = None, 0
        gaps = []  # seconds between two changes of rows_done
        while True:
            b = get(f"{url}/v1/batches/{job['batch_id']}")
            now = time.perf_counter()
            log(f"  {b['state']:<9} {b['rows_done']:>9,} / {b['rows_total'] or 0:,} rows  ({b['rows_failed']} rejected)")
            if b["rows_done"] != last_done:
                if last_change is not None:
                    gaps.append(now - last_change)
                last_change, last_done = now, b["rows_done"]
            if b["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1.0)
        if b["state"] != "succeeded":
            raise SystemExit(f"the batch ended {b['state']}: {b['error']}")
        out = tmp / "results.csv"
        size = download(f"{url}/v1/batches/{job['batch_id']}/results", out)
        ours_s = time.perf_counter() - t0
        log(f"  results downloaded ({size / 1e6:,.0f} MB) {ours_s:.1f}s after the first byte was sent")
        ours_rps = args.rows / ours_s

        # --- MLflow
        log("mlflow models predict on the same file and model")
        mlf_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
        t1 = time.perf_counter()
        p = start([sys.executable, "-m", "mlflow", "models", "predict", "-m", f"models:/{MODEL}@champion", "-i", str(data),
                   "-t", "csv", "-o", str(tmp / "mlflow-out.json"), "--env-manager", "local"], mlf_env, tmp / "mlflow-predict.log")
        rss.watch(p.pid, "mlflow")
        code = p.wait()
        mlflow_s = time.perf_counter() - t1
        if code != 0:
            raise SystemExit(f"mlflow models predict failed ({code}): {(tmp / 'mlflow-predict.log').read_text()[-2000:]}")
        mlflow_rps = args.rows / mlflow_s
        log(f"  done in {mlflow_s:.1f}s")
    finally:
        rss.stop()
        for proc in reversed(procs):
            stop_group(proc, timeout=30)
        stop_server(tracking_proc)
        drop_app_db(pg_name)
        drop_app_db(meta_name)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    ours_peak = max((kv for kv in rss.peak.items() if not kv[0].startswith("mlflow")), key=lambda kv: kv[1])
    mlflow_peak = rss.largest("mlflow")
    print()
    print(f"{'':<26}{'rows':>11}{'seconds':>10}{'rows/s':>10}{'peak RSS MB':>13}")
    print(f"{'ours (API + Airflow)':<26}{args.rows:>11,}{ours_s:>10.1f}{ours_rps:>10,.0f}{ours_peak[1]:>13,.0f}"
          f"   largest: {ours_peak[0]}")
    print(f"{'mlflow models predict':<26}{args.rows:>11,}{mlflow_s:>10.1f}{mlflow_rps:>10,.0f}{mlflow_peak[1]:>13,.0f}")
    print("ours per process (peak RSS MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rss.peak.items())
                                                         if not k.startswith("mlflow")))
    print(f"progress: rows_done moved {len(gaps) + 1} times, at most {max(gaps, default=0):.1f}s apart (polled every 1s); "
          f"chunks of {args.chunk_rows:,} rows; ours logs every row and returns reason codes")
    print(f"batch_job_ratio={ours_rps / max(mlflow_rps, 1e-9):.2f} peak_rss_mb={ours_peak[1]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
