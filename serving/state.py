"""What every route shares: the per-app state, API-key checks and prediction ids."""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy.engine import Engine

from ledgerline.settings import Settings
from ledgerline.tenancy import DEFAULT_TENANT, Principal, Scope, grants
from serving.errors import AuthError
from serving.metrics import ServingMetrics
from serving.predlog import PredictionLog
from serving.settings import ServingSettings
from serving.watcher import ChampionWatcher, ModelHolder

if TYPE_CHECKING:
    from serving.management import ModelManagement


@dataclass
class ServingState:
    settings: ServingSettings
    platform: Settings
    metrics: ServingMetrics
    holder: ModelHolder
    watcher: ChampionWatcher
    engine: Engine
    log: PredictionLog
    api_keys: tuple[bytes, ...]
    admin_key: bytes
    versions: dict[str, str]
    started_at: datetime
    management: ModelManagement | None = None  # the write side of /v1/models/{name}/... (None: 503)



def state_of(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


def authorize(request: Request, keys: tuple[bytes, ...], header: str, what: str) -> None:
    provided = request.headers.get(header)
    if not provided:
        raise AuthError(f"missing API key: send your key in the '{header}' header", missing=True)
    given = provided.encode()
    ok = False
    for key in keys:  # constant time per key; no early exit on a match
        ok |= hmac.compare_digest(given, key)
    if not ok:
        raise AuthError(f"the key in '{header}' is not valid for {what}", missing=False)


def spill_dir(platform: Settings, db_url: str) -> Path:
    """Where prediction-log rows go when the database is still away at shutdown: one folder per
    database, so rows are only ever replayed into the database they were meant for."""
    import hashlib

    from sqlalchemy.engine import make_url

    key = make_url(db_url).render_as_string(hide_password=True)
    return (platform.home / "prediction-log-spill" / hashlib.sha256(key.encode()).hexdigest()[:16]).resolve()


def principal_of(request: Request, need: Scope = "predict", what: str = "this operation") -> Principal:
    """Resolve the request's key to a :class:`Principal` (cached on the request) and check it grants
    ``need``: AuthError (401 without a key, 403 for a key that does not grant it).

    Today only the environment's keys exist; they belong to the default tenant. Issue 20's tenant
    keys (stored hashed in the app database) resolve here too.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    state = state_of(request)
    header = state.settings.api_key_header
    if cached is None:
        provided = request.headers.get(header)
        if not provided:
            raise AuthError(f"missing API key: send your key in the '{header}' header", missing=True)
        given = provided.encode()
        admin = hmac.compare_digest(given, state.admin_key)
        matched = None
        for i, key in enumerate(state.api_keys, 1):  # constant time per key; no early exit on a match
            if hmac.compare_digest(given, key):
                matched = i
        if admin:
            cached = Principal(DEFAULT_TENANT, "env-admin", "admin")
        elif matched is not None:
            cached = Principal(DEFAULT_TENANT, f"env-{matched}", "predict")
        else:
            raise AuthError(f"the key in '{header}' is not valid for {what}", missing=False)
        request.state.principal = cached
    if not grants(cached.scope, need):
        raise AuthError(f"the key in '{header}' has scope {cached.scope!r}, which does not allow {what}", missing=False)
    return cached


def require_api_key(request: Request) -> None:
    principal_of(request, "predict", "predictions and feedback")


def require_admin_key(request: Request) -> None:
    principal_of(request, "admin", "admin operations")


def new_prediction_ids(n: int) -> list[str]:
    """``n`` time-ordered ids in the UUIDv7 layout (RFC 9562): 48-bit Unix milliseconds, 74 random
    bits per request, the rows of a batch counting up in the low bits.

    Time-ordered keys land at the right edge of the primary-key index, which makes the
    prediction log's inserts markedly cheaper than random UUIDs, and sort ids by time.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    head = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62)
    low = rand & _LOW62
    out = []
    for i in range(n):
        h = f"{head | ((low + i) & _LOW62):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


_LOW62 = (1 << 62) - 1

#: How far ahead of this host's clock a prediction id's time may be (clocks of several hosts differ a little).
CLOCK_SKEW_MS = 30_000


def prediction_id_ms(prediction_id: str) -> int | None:
    """The creation time (Unix ms) a prediction id of ours carries, or None when it is not a UUIDv7."""
    if len(prediction_id) != 36 or [len(p) for p in prediction_id.split("-")] != [8, 4, 4, 4, 12]:
        return None
    try:
        value = int(prediction_id.replace("-", ""), 16)
    except ValueError:
        return None
    if (value >> 76) & 0xF != 0x7 or (value >> 62) & 0b11 != 0b10:
        return None
    return value >> 80


def could_be_pending(prediction_id: str, *, window_seconds: float, oldest_log_ms: int | None, now_ms: int | None = None) -> bool:
    """Whether a prediction id not (yet) in the database may still be in a worker's log buffer: a UUIDv7
    not from the future and younger than the window, or than the oldest record any log still holds."""
    ms = prediction_id_ms(prediction_id)
    if ms is None:
        return False
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    if ms > now_ms + CLOCK_SKEW_MS:
        return False
    since = now_ms - int(window_seconds * 1000)
    if oldest_log_ms is not None:
        since = min(since, oldest_log_ms - CLOCK_SKEW_MS)
    return ms >= since
