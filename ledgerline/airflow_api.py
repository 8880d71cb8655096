"""A small client of Airflow 3's REST API: trigger a DAG run and read its state.

Airflow 3 (``api-server``) authenticates API calls with a JWT: ``POST /auth/token`` with a user
name and password (the simple auth manager of ``airflow standalone``, or FAB) answers
``{"access_token": ...}``, sent as ``Authorization: Bearer``. Without a user name no token is
asked for (an api-server with ``simple_auth_manager_all_admins``). Tokens are cached per
server, user and password for a few minutes and asked for again after a 401.

``POST /api/v2/dags/{dag_id}/dagRuns`` needs the ``logical_date`` key (``null``: a run with no
logical date, as many as one likes); a given ``dag_run_id`` that exists already answers 409,
which :func:`trigger_dag_run` turns into the existing run, so triggering twice with the same
run id starts one run.

Only the standard library is used (the foundation has no HTTP client dependency).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

#: how long a token is reused before a new one is asked for (Airflow's default lifetime is 24 h)
TOKEN_REUSE_SECONDS = 300.0
#: the file ``airflow standalone`` writes the generated admin password to (simple auth manager)
DEMO_PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


class AirflowUnavailable(LedgerlineError):
    """Airflow's API cannot do what was asked: unreachable, refused the login, or no such DAG/run.

    ``status`` is the HTTP status Airflow answered (None when it did not answer at all).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AirflowApi:
    """Where Airflow's api-server is and how to log in (``username`` None: no login)."""

    base_url: str
    username: str | None
    password: str | None
    timeout: float = 10.0

    def __repr__(self) -> str:  # never print the password
        return f"AirflowApi(base_url={self.base_url!r}, username={self.username!r}, timeout={self.timeout})"


@dataclass(frozen=True)
class DagRunRef:
    """One DAG run as Airflow reports it; ``url`` is the run's page in the Airflow UI."""

    dag_id: str
    run_id: str
    state: str
    url: str


def airflow_api(settings: Settings) -> AirflowApi:
    """The client for ``LEDGERLINE_AIRFLOW_URL`` / ``_USER`` / ``_PASSWORD``.

    Without a password, the one ``airflow standalone`` generated for the user under
    ``<home>/airflow`` is used when that file exists (``make demo``); without a user, ``admin``
    when that file has it.
    """
    user, password = settings.airflow_user, settings.airflow_password
    if password is None:
        generated = _generated_passwords(settings.home.resolve() / "airflow" / DEMO_PASSWORDS_FILE)
        user = user or ("admin" if "admin" in generated else None)
        if user is not None:
            password = generated.get(user)
    return AirflowApi(
        base_url=settings.airflow_url.rstrip("/"),
        username=user,
        password=password,
        timeout=settings.airflow_timeout_seconds,
    )


def _generated_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- HTTP


_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def _send(api: AirflowApi, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One request -> (status, parsed JSON body or text); raises AirflowUnavailable when nobody answers."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{api.base_url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=api.timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AirflowUnavailable(
            f"Airflow's API at {api.base_url} does not answer ({reason}); start Airflow "
            "(`make demo` or the compose services) or set LEDGERLINE_AIRFLOW_URL"
        ) from exc
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")[:500]


def _token(api: AirflowApi, *, fresh: bool = False) -> str | None:
    if api.username is None:
        return None
    key = (api.base_url, api.username, hashlib.sha256((api.password or "").encode()).hexdigest())
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached and not fresh and time.monotonic() - cached[1] < TOKEN_REUSE_SECONDS:
            return cached[0]
    status, body = _send(api, "POST", "/auth/token", {"username": api.username, "password": api.password or ""})
    if status in (401, 403) or (status == 400 and api.password is None):
        raise AirflowUnavailable(
            f"Airflow at {api.base_url} refused the login of user {api.username!r} (HTTP {status}); "
            "set LEDGERLINE_AIRFLOW_USER and LEDGERLINE_AIRFLOW_PASSWORD",
            status,
        )
    if status >= 300 or not isinstance(body, dict) or "access_token" not in body:
        raise AirflowUnavailable(f"Airflow at {api.base_url} answered the login with HTTP {status}: {_detail(body)}", status)
    token = str(body["access_token"])
    with _tokens_lock:
        _tokens[key] = (token, time.monotonic())
    return token


def _call(api: AirflowApi, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, answer = _send(api, method, path, body, _token(api))
    if status == 401 and api.username is not None:  # expired or revoked token: log in again once
        status, answer = _send(api, method, path, body, _token(api, fresh=True))
    if status == 401:
        raise AirflowUnavailable(
            f"Airflow at {api.base_url} wants a login (HTTP 401); set LEDGERLINE_AIRFLOW_USER and "
            "LEDGERLINE_AIRFLOW_PASSWORD",
            status,
        )
    if status == 403:
        raise AirflowUnavailable(
            f"Airflow user {api.username!r} may not {method} {path} (HTTP 403); give it access to the DAG", status
        )
    if status >= 500:
        raise AirflowUnavailable(f"Airflow at {api.base_url} failed on {method} {path} (HTTP {status}): {_detail(answer)}", status)
    return status, answer


def _detail(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]


def _runs_path(dag_id: str) -> str:
    return f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns"


def _ref(api: AirflowApi, dag_id: str, body: Any) -> DagRunRef:
    if not isinstance(body, dict) or "dag_run_id" not in body:
        raise AirflowUnavailable(f"Airflow answered something that is not a DAG run for {dag_id}: {_detail(body)}")
    run_id = str(body["dag_run_id"])
    url = f"{api.base_url}/dags/{urllib.parse.quote(dag_id, safe='')}/runs/{urllib.parse.quote(run_id, safe='')}"
    return DagRunRef(dag_id=str(body.get("dag_id", dag_id)), run_id=run_id, state=str(body.get("state")), url=url)


# --------------------------------------------------------------------------- API


def trigger_dag_run(
    api: AirflowApi,
    dag_id: str,
    conf: dict[str, Any],
    run_id: str | None = None,
    note: str | None = None,
    logical_date: datetime | None = None,
) -> DagRunRef:
    """Start a run of ``dag_id`` with ``conf``; with ``run_id`` a second call returns the first run.

    ``logical_date`` (timezone-aware) is sent as the run's logical date; None: a run without one.
    """
    body: dict[str, Any] = {
        "logical_date": logical_date.isoformat() if logical_date is not None else None,
        "conf": conf,
    }
    if run_id is not None:
        body["dag_run_id"] = run_id
    if note is not None:
        body["note"] = note
    status, answer = _call(api, "POST", _runs_path(dag_id), body)
    if status == 409 and run_id is not None:
        return get_dag_run(api, dag_id, run_id)
    if status == 404:
        raise AirflowUnavailable(
            f"Airflow has no DAG {dag_id!r} ({_detail(answer)}); is the dag-processor running and the DAG folder "
            "the one with Ledgerline's dags/?",
            status,
        )
    if status >= 300:
        raise AirflowUnavailable(f"Airflow refused to start {dag_id} (HTTP {status}): {_detail(answer)}", status)
    return _ref(api, dag_id, answer)


def get_dag_run(api: AirflowApi, dag_id: str, run_id: str) -> DagRunRef:
    """The run ``run_id`` of ``dag_id`` as it is now (state ``queued``, ``running``, ``success``, ``failed``)."""
    status, answer = _call(api, "GET", f"{_runs_path(dag_id)}/{urllib.parse.quote(run_id, safe='')}")
    if status == 404:
        raise AirflowUnavailable(f"Airflow has no run {run_id!r} of DAG {dag_id!r}: {_detail(answer)}", status)
    if status >= 300:
        raise AirflowUnavailable(f"Airflow answered HTTP {status} for run {run_id} of {dag_id}: {_detail(answer)}", status)
    return _ref(api, dag_id, answer)
