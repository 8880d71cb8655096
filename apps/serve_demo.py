"""``make demo``'s serving step: the prediction API on 127.0.0.1:8000 with every family's promoted model.

The API runs as ``ledgerline serve`` in its own process group (``ledgerline down`` stops it),
logging to ``<home>/logs/serving.log`` and writing predictions to the demo's SQLite app
database. Its keys are generated once and kept in ``<home>/serving-keys.json`` (dev only).
A second ``make demo`` reuses the running API and makes it reload, so it serves the new champion.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

HOST = "127.0.0.1"
PORT = 8000
URL = f"http://{HOST}:{PORT}"
Progress = Callable[[str], None]


def _keys(settings: Settings) -> dict[str, str]:
    path = settings.home.resolve() / "serving-keys.json"
    if path.exists():
        keys = json.loads(path.read_text())
        if keys.get("api_key") and keys.get("admin_key"):
            return dict(keys)
    keys = {"api_key": f"demo-{secrets.token_urlsafe(18)}", "admin_key": f"demo-admin-{secrets.token_urlsafe(18)}"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys, indent=2) + "\n")
    path.chmod(0o600)
    return keys


def _call(method: str, path: str, key: str | None = None, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError):
        return 0, None


def local_redis(host: str = "127.0.0.1", port: int = 6379) -> str | None:
    """``redis://host:port/0`` when Redis answers PING there within a second, else None."""
    import redis

    client = redis.Redis(host=host, port=port, db=0, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return f"redis://{host}:{port}/0" if client.ping() else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _start(settings: Settings, model_names: Sequence[str], keys: dict[str, str], family_env: dict[str, str],
           progress: Progress) -> None:
    import sys

    from apps.demo import _write_pid
    from ledgerline.mlflow_server import start_process, wait_for_http

    home = settings.home.resolve()
    log = home / "logs" / "serving.log"
    env = {
        **os.environ,
        "LEDGERLINE_TRACKING_URI": settings.tracking_uri,
        "LEDGERLINE_HOME": str(home),
        "LEDGERLINE_APP_DB_URL": settings.resolved_app_db_url(),
        "LEDGERLINE_SERVING_MODELS": ",".join(model_names),
        "LEDGERLINE_SERVING_API_KEYS": keys["api_key"],
        "LEDGERLINE_SERVING_ADMIN_KEY": keys["admin_key"],
        **family_env,
        "PYTHONUNBUFFERED": "1",
    }
    cli = Path(sys.executable).parent / "ledgerline"
    argv = [str(cli), "serve", "--host", HOST, "--port", str(PORT), "--workers", "1", "--log-level", "info"]
    progress(f"starting the serving API on {HOST}:{PORT} with {', '.join(model_names)} (log: {log})")
    proc = start_process(argv, env=env, log_path=log)
    _write_pid(settings, "serving", proc.pid)
    wait_for_http(f"{URL}/ready", timeout=240, proc=proc, log_path=log, name="serving API")


def start_serving(settings: Settings, model_names: Sequence[str], progress: Progress) -> list[str]:
    """Serve every ``name``@champion on :8000 (start or reload), send an example and one feedback per model.

    A stateful family's state (e.g. customer profiles) lives in the machine's Redis (127.0.0.1:6379, db 0)
    when it answers; each family's demo step says what its serving needs (:meth:`DemoStep.serving_env`)
    and adds a note when it falls back. Returns the lines the demo prints: where the API is, the demo key
    and a ready curl per model.
    """
    from apps.demo_steps import demo_step
    from ledgerline.families import FAMILIES

    keys = _keys(settings)
    redis_url = local_redis()
    family_env: dict[str, str] = {}
    notes: list[str] = []
    for family in FAMILIES:
        env, said = demo_step(family).serving_env(redis_url)
        family_env.update(env)
        notes += said
    status, version = _call("GET", "/version")
    if status == 200 and isinstance(version, dict) and version.get("service") == "ledgerline-serving":
        code, report = _call("POST", "/admin/reload", keys["admin_key"], timeout=240)
        if code in (401, 403):
            raise LedgerlineError(
                f"a Ledgerline serving API already runs on {URL} with other keys; stop it (make down) and run the demo again"
            )
        if code == 202:  # still loading in the background (bounded reload)
            report = {"models": "reload under way; see /ready"}
        elif code != 200:
            raise LedgerlineError(f"the serving API on {URL} could not reload ({code}: {report}); see its log")
        code, served = _call("GET", "/v1/models", keys["api_key"])
        missing = [n for n in model_names if not (code == 200 and n in served.get("models", {}))]
        if missing:
            raise LedgerlineError(f"the serving API already running on {URL} does not serve {', '.join(missing)} "
                                  "(an earlier demo started it); stop it (make down) and run the demo again")
        progress(f"serving API already running at {URL}; reloaded @champion ({report['models']})")
    elif status != 0:
        raise LedgerlineError(f"port {PORT} is taken by something that is not the Ledgerline serving API; free it")
    else:
        _start(settings, model_names, keys, family_env, progress)
    return _examples(settings, model_names, keys) + notes


def _examples(settings: Settings, model_names: Sequence[str], keys: dict[str, str]) -> list[str]:
    from apps.demo_steps import DemoClient, demo_step

    log = f"{settings.home.resolve()}/logs/serving.log"
    code, served = _call("GET", "/v1/models", keys["api_key"])
    if code != 200:
        raise LedgerlineError(f"GET /v1/models failed ({code}: {served}); see {log}")
    lines = [
        f"  serving API          {URL}   (docs: {URL}/docs; log: {log})",
        f"  demo API key         {keys['api_key']}   (dev only; admin key and this one in {settings.home.resolve()}/serving-keys.json)",
    ]
    client = DemoClient(URL, keys["api_key"], log, _call)
    curls: list[str] = []
    for name in model_names:
        info = served["models"].get(name)
        if info is None:
            raise LedgerlineError(f"the serving API does not serve {name} yet (see {URL}/ready and {log})")
        shown = demo_step(info["family"]).run(client, name, info)  # the family's step: request, answer, feedback
        lines += shown.lines
        curls.append(shown.curl)
    return lines + ["  try it:", *curls]
