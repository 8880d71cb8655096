"""What every route shares: the per-app state, API-key checks and prediction ids."""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import Request
from sqlalchemy.engine import Engine

from ledgerline.settings import Settings
from serving.errors import AuthError
from serving.metrics import ServingMetrics
from serving.predlog import PredictionLog
from serving.settings import ServingSettings
from serving.watcher import ChampionWatcher, ModelHolder


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



def state_of(request: Request) -> ServingState:
    return request.app.state.serving  # type: ignore[no-any-return]


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


def require_api_key(request: Request) -> None:
    state = state_of(request)
    authorize(request, state.api_keys, state.settings.api_key_header, "predictions and feedback")


def require_admin_key(request: Request) -> None:
    state = state_of(request)
    authorize(request, (state.admin_key,), state.settings.api_key_header, "admin operations")


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
