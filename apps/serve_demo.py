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
import shlex
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


def redis_profile_store(host: str = "127.0.0.1", port: int = 6379) -> str | None:
    """``redis://host:port/0`` when Redis answers PING there within a second, else None."""
    import redis

    client = redis.Redis(host=host, port=port, db=0, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return f"redis://{host}:{port}/0" if client.ping() else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _start(settings: Settings, model_names: Sequence[str], keys: dict[str, str], profile_store_url: str,
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
        "LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_STORE_URL": profile_store_url,
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

    Anomaly profiles (a stateful family's state) live in the machine's Redis (127.0.0.1:6379, db 0,
    the default key prefix); when Redis does not answer, in the API's memory, and the lines say so.
    Returns the lines the demo prints: where the API is, the demo key and a ready curl per model.
    """
    keys = _keys(settings)
    store = redis_profile_store()
    notes: list[str] = []
    if store is None:
        store = "memory"
        notes.append("  note                 Redis does not answer on 127.0.0.1:6379: anomaly profiles are kept in the "
                     "API's memory (lost on restart); start Redis and run the demo again to keep them")
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
        _start(settings, model_names, keys, store, progress)
    return _examples(settings, model_names, keys) + notes


def _examples(settings: Settings, model_names: Sequence[str], keys: dict[str, str]) -> list[str]:
    from serving.family import get_serving_family

    log = f"{settings.home.resolve()}/logs/serving.log"
    code, served = _call("GET", "/v1/models", keys["api_key"])
    if code != 200:
        raise LedgerlineError(f"GET /v1/models failed ({code}: {served}); see {log}")
    lines = [
        f"  serving API          {URL}   (docs: {URL}/docs; log: {log})",
        f"  demo API key         {keys['api_key']}   (dev only; admin key and this one in {settings.home.resolve()}/serving-keys.json)",
    ]
    curls: list[str] = []
    for name in model_names:
        info = served["models"].get(name)
        if info is None:
            raise LedgerlineError(f"the serving API does not serve {name} yet (see {URL}/ready and {log})")
        example = info["example"]
        if info["family"] == "spending-forecast":  # answers and feedback per series: its own routes
            lines_, curl = _forecast_demo(name, example, keys["api_key"], log)
            lines += lines_
            curls.append(curl)
            continue
        predict = f"/v1/models/{name}/predict"
        code, answer = _call("POST", predict, keys["api_key"], example)
        if code != 200:
            raise LedgerlineError(f"the example prediction of {name} failed ({code}: {answer}); see {log}")
        first = answer["predictions"][0]
        flat = get_serving_family(info["family"]).flatten(first)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in flat.items())
        lines.append(f"  {name:<20} v{first['version']} ({info['family']}): {shown}")
        classes = (info.get("details") or {}).get("classes")
        if classes:  # categories: the feedback is a correction, which answers the next line of the merchant at once
            label = next(c for c in classes if c != first.get("model_category"))
            what = f"correction '{label}'"
        else:
            label, what = 0, "label 0 (the negative class)"
        code, fb = _call("POST", "/v1/feedback", keys["api_key"], {"prediction_id": first["prediction_id"], "label": label})
        if code not in (200, 201):
            raise LedgerlineError(f"the example feedback of {name} failed ({code}: {fb})")
        lines.append(f"  {'':<20} feedback {what} {fb['status']} for prediction {first['prediction_id']}")
        if classes:
            code, again = _call("POST", predict, keys["api_key"], example)
            if code == 200:
                p = again["predictions"][0]
                lines.append(f"  {'':<20} the same line again: category={p['category']} (source: {p['source']}); "
                             f"rules: GET {URL}/admin/models/{name}/corrections (admin key)")
        curls.append(
            f"    curl -s -X POST {URL}{predict} -H {shlex.quote('X-API-Key: ' + keys['api_key'])} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(example))}"
        )
    return lines + ["  try it:", *curls]


def _forecast_demo(name: str, example: dict[str, Any], api_key: str, log: Any) -> tuple[list[str], str]:
    """One series' forecast from the precomputed table, and its first actual sent back as feedback."""
    route = f"/v1/models/{name}/forecast"
    body = {"series_id": example["series_id"], "horizon": 6, "interval": 0.8}
    code, answer = _call("POST", route, api_key, body)
    if code != 200:
        raise LedgerlineError(f"the example forecast of {name} failed ({code}: {answer}); see {log}")
    first = answer["points"][0]
    lines = [f"  {name:<20} v{answer['version']} (spending-forecast): {body['series_id']} {first['ds']} "
             f"yhat={first['yhat']:.1f} [{first['yhat_lower']:.1f}, {first['yhat_upper']:.1f}] (80 %)"]
    actual = {"actuals": [{"series_id": body["series_id"], "ds": first["ds"], "y": round(first["yhat"], 2)}]}
    code, fb = _call("POST", f"/v1/models/{name}/actuals", api_key, actual)
    if code != 200:
        raise LedgerlineError(f"the example actuals of {name} failed ({code}: {fb})")
    lines.append(f"  {'':<20} actual for {first['ds']} recorded (POST /v1/models/{name}/actuals)")
    curl = (f"    curl -s -X POST {URL}{route} -H {shlex.quote('X-API-Key: ' + api_key)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}")
    return lines, curl


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
