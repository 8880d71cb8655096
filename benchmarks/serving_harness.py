"""The serving benchmark's machinery (``benchmarks/bench_serving.py``): ports, servers' process groups and
their peak RSS, ``wrk`` runs and their results, the app database and the Redis profile prefix of a run."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REDIS_URL = os.environ.get("LEDGERLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONNECTIONS = 8
BATCH = 1000
BATCHES = (100, BATCH)
MIN_COMPLETED = 5  # a batch measurement with fewer completed requests is repeated for longer
PG_ADMIN = os.environ.get("LEDGERLINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
-- one request body per line; each thread starts at its own line and steps by the thread count,
-- so a stream of transactions is sent once, in order, across the threads
local bodies = {}
for line in io.lines("%(body)s") do bodies[#bodies + 1] = line end
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local i = 0
init = function(args)
  i = %(offset)d + (tid or 0)
end
request = function()
  local b = bodies[(i %% #bodies) + 1]
  i = i + %(threads)d
  return wrk.format(nil, nil, nil, b)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\": %%d, \"duration_us\": %%d, \"status_errors\": %%d, \"socket_errors\": %%d, " ..
    "\"p50_us\": %%d, \"p99_us\": %%d, \"mean_us\": %%f}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Successful (2xx) requests per second."""
        return (self.requests - self.status_errors) / self.seconds if self.seconds else 0.0


@dataclass
class ServerResult:
    name: str
    model: str
    single: LoadResult
    batches: dict[int, LoadResult]
    peak_rss_mb: float
    rows_answered: int  # records in completed 2xx answers the server logs, warm-ups included

    @property
    def batch(self) -> LoadResult:
        return self.batches[BATCH]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found; installing it with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk could not be installed; install it (apt-get install wrk) and run again")
    return path


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}) before {url} answered; log: {log_path}\n"
                             + log_path.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s; log: {log_path}\n" + log_path.read_text()[-3000:])


def group_rss_mb(pgid: int) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[2] != str(pgid):
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


@contextmanager
def rss_sampler(pgid: int) -> Iterator[list[float]]:
    peak = [0.0]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], group_rss_mb(pgid))
            stop.wait(0.25)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield peak
    finally:
        stop.set()
        t.join()


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # uvicorn workers may outlive the supervisor by a moment
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def run_wrk(wrk: str, url: str, body: Path, headers: dict[str, str], seconds: int, tmp: Path, offset: int = 0,
            threads: int = 2) -> LoadResult:
    """``body``: one request body per line, sent in turn from line ``offset`` on (cycling at the end)."""
    lua = tmp / f"wrk-{body.stem}-{secrets.token_hex(3)}.lua"
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    lua.write_text(WRK_LUA % {"headers": header_lines, "body": str(body), "offset": offset, "threads": threads})
    cmd = [wrk, f"-t{threads}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((line for line in out.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    r = json.loads(line[len("RESULT "):])
    return LoadResult(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        status_errors=r["status_errors"],
        socket_errors=r["socket_errors"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
    )


def drive(name: str, model: str, wrk: str, url: str, bodies: dict[int, Path], headers: dict[str, str], pgid: int,
          duration: int, tmp: Path, single_url: str | None = None) -> ServerResult:
    """Single records, then each batch size; ``bodies`` maps records per request -> a file of request bodies
    (one per line; a stream goes on where the warm-up stopped). ``single_url``: where single records go
    when not to ``url`` (the forecast route, which does not log its answers)."""
    answered = 0
    batches: dict[int, LoadResult] = {}
    with rss_sampler(pgid) as peak:
        w1 = run_wrk(wrk, single_url or url, bodies[1], headers, 3, tmp)  # warm-up
        s = run_wrk(wrk, single_url or url, bodies[1], headers, duration, tmp, offset=w1.requests)
        if single_url is None:
            answered += sum(r.requests - r.status_errors for r in (w1, s))
        log(f"{name} [{model}]: single {s.rps:,.0f} req/s, p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms, "
            f"{s.status_errors} non-2xx, {s.socket_errors} socket errors")
        for n in sorted(k for k in bodies if k > 1):
            w2 = run_wrk(wrk, url, bodies[n], headers, 3, tmp)
            b = run_wrk(wrk, url, bodies[n], headers, duration, tmp, offset=w2.requests)
            answered += n * sum(r.requests - r.status_errors for r in (w2, b))
            if b.requests - b.status_errors < MIN_COMPLETED:  # seconds per request (MLflow's forecast pyfunc)
                longer = max(4 * duration, 30)
                log(f"{name} [{model}]: only {b.requests - b.status_errors} {n}-row requests completed in "
                    f"{duration}s; measuring again for {longer}s")
                b = run_wrk(wrk, url, bodies[n], headers, longer, tmp, offset=w2.requests + b.requests)
                answered += n * (b.requests - b.status_errors)
            batches[n] = b
            log(f"{name} [{model}]: {n}-row batch {b.rps * n:,.0f} rows/s ({b.rps:.1f} req/s, p99 {b.p99_ms:.0f} ms), "
                f"{b.status_errors} non-2xx, {b.socket_errors} socket errors")
    return ServerResult(name, model, s, batches, peak[0], answered)


def redis_profiles(tmp: Path) -> tuple[str, str, bool]:
    """(profile store URL, key prefix, is Redis): Redis when it answers, else each worker's memory."""
    prefix = f"ll-bench-{secrets.token_hex(4)}:"
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
        return REDIS_URL, prefix, True
    except Exception as exc:
        log(f"Redis not available at {REDIS_URL} ({exc}); profiles stay in each worker's memory")
        return "memory", prefix, False


def delete_profiles(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    n = 0
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            n += int(client.delete(key))  # type: ignore[arg-type]
    finally:
        client.close()
    return n


def make_app_db(tmp: Path) -> tuple[str, str | None]:
    """A fresh Postgres database when one answers (production-like), else SQLite."""
    try:
        import psycopg2
        from sqlalchemy.engine import make_url

        admin = make_url(PG_ADMIN)
        conn = psycopg2.connect(host=admin.host or "127.0.0.1", port=admin.port or 5432, user=admin.username or "postgres",
                                password=admin.password, dbname=admin.database or "postgres", connect_timeout=3)
        conn.autocommit = True
        name = f"ll_bench_{secrets.token_hex(4)}"
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        url = admin.set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
        return url, name
    except Exception as exc:
        log(f"Postgres not available ({exc}); the prediction log goes to SQLite")
        return f"sqlite:///{tmp / 'app.db'}", None


def drop_app_db(name: str | None) -> None:
    if name is None:
        return
    import psycopg2
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN)
    conn = psycopg2.connect(host=admin.host or "127.0.0.1", port=admin.port or 5432, user=admin.username or "postgres",
                            password=admin.password, dbname=admin.database or "postgres", connect_timeout=3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def count_rows(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one())
    finally:
        engine.dispose()
