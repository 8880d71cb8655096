"""``make demo``'s serving step: the prediction API on 127.0.0.1:8000 with the promoted model.

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
from collections.abc import Callable
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


def _start(settings: Settings, model_name: str, keys: dict[str, str], progress: Progress) -> None:
    import sys

    from ledgerline.app.demo import _write_pid
    from ledgerline.mlflow_server import start_process, wait_for_http

    home = settings.home.resolve()
    log = home / "logs" / "serving.log"
    env = {
        **os.environ,
        "LEDGERLINE_TRACKING_URI": settings.tracking_uri,
        "LEDGERLINE_HOME": str(home),
        "LEDGERLINE_APP_DB_URL": settings.resolved_app_db_url(),
        "LEDGERLINE_SERVING_MODELS": model_name,
        "LEDGERLINE_SERVING_API_KEYS": keys["api_key"],
        "LEDGERLINE_SERVING_ADMIN_KEY": keys["admin_key"],
        "PYTHONUNBUFFERED": "1",
    }
    cli = Path(sys.executable).parent / "ledgerline"
    argv = [str(cli), "serve", "--host", HOST, "--port", str(PORT), "--workers", "1", "--log-level", "info"]
    progress(f"starting the serving API on {HOST}:{PORT} (log: {log})")
    proc = start_process(argv, env=env, log_path=log)
    _write_pid(settings, "serving", proc.pid)
    wait_for_http(f"{URL}/ready", timeout=240, proc=proc, log_path=log, name="serving API")


def start_serving(settings: Settings, model_name: str, progress: Progress) -> list[str]:
    """Serve ``model_name``@champion on :8000 (start or reload), send examples and one feedback.

    Returns the lines the demo prints: where the API is, the demo key and a curl example.
    """
    keys = _keys(settings)
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
        progress(f"serving API already running at {URL}; reloaded @champion ({report['models']})")
    elif status != 0:
        raise LedgerlineError(f"port {PORT} is taken by something that is not the Ledgerline serving API; free it")
    else:
        _start(settings, model_name, keys, progress)
    return _examples(settings, model_name, keys)


def _examples(settings: Settings, model_name: str, keys: dict[str, str]) -> list[str]:
    from features.generator import generate_loan_applications

    frame = generate_loan_applications(4, seed=2024).drop(columns=["application_id", "default"])
    records = json.loads(frame.to_json(orient="records"))
    predict = f"/v1/models/{model_name}/predict"
    code, one = _call("POST", predict, keys["api_key"], records[0])
    if code != 200:
        raise LedgerlineError(f"the example prediction failed ({code}: {one}); see {settings.home}/logs/serving.log")
    code, batch = _call("POST", predict, keys["api_key"], records[1:])
    if code != 200:
        raise LedgerlineError(f"the example batch failed ({code}: {batch}); see {settings.home}/logs/serving.log")
    answers = one["predictions"] + batch["predictions"]
    first = answers[0]
    code, fb = _call("POST", "/v1/feedback", keys["api_key"], {"prediction_id": first["prediction_id"], "label": 0})
    if code not in (200, 201):
        raise LedgerlineError(f"the example feedback failed ({code}: {fb})")
    lines = [
        f"  serving API          {URL}   (docs: {URL}/docs; {model_name} v{first['version']}; "
        f"log: {settings.home.resolve()}/logs/serving.log)",
        f"  demo API key         {keys['api_key']}   (dev only; admin key and this one in {settings.home.resolve()}/serving-keys.json)",
    ]
    for a in answers:
        reasons = ", ".join(f"{r['feature']}={r['value']}" for r in a["reason_codes"]) or "-"
        lines.append(
            f"  example answer       p(default)={a['probability_of_default']:.3f} -> {a['decision']:<7}  reasons: {reasons}"
        )
    lines.append(f"  feedback             label 0 (repaid) {fb['status']} for prediction {first['prediction_id']}")
    curl = (
        f"curl -s -X POST {URL}{predict} -H {shlex.quote('X-API-Key: ' + keys['api_key'])} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(records[0]))}"
    )
    lines += ["  try it:", f"    {curl}"]
    return lines
