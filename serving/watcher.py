"""Which version each model serves, and the watcher that hot-swaps it when ``@champion`` moves.

:class:`ModelHolder` keeps an immutable mapping name -> :class:`ServedModel` and replaces
the whole mapping on a swap, so a request sees one consistent version from start to end
and never waits for a lock. :class:`ChampionWatcher` polls the registry every
``poll_interval_seconds`` (or at once on ``POST /admin/reload``), loads and warms a new
champion off the request path, then swaps. Over HTTP a poll is one bounded REST call per
model (``GET registered-models/alias``, timeout ``registry_timeout_seconds``, no retries)
comparing the alias's version with the served one, so it is cheap enough to run every few
seconds (default 5 s) and a rollback or promotion takes effect within one poll even when
nobody calls ``/admin/reload``. ``/admin/reload`` itself never runs the check in the
request: it asks the watcher thread and waits at most ``reload_wait_seconds``. A version that fails to load is reported and
not retried until it changes or a reload is forced; the old version keeps serving.

With several workers each one watches for itself; ``/admin/reload`` reloads the worker
that receives it and touches ``reload_signal_file`` so the others follow within a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledgerline.settings import Settings
from serving import loader
from serving.errors import ModelLoadError, ModelNotReady, RegistryUnavailable, UnknownModel
from serving.metrics import ServingMetrics
from serving.model import ServedModel
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)


@dataclass
class ModelStatus:
    name: str
    champion: str | None = None  # last version seen behind @champion
    error: str | None = None
    failed_version: str | None = None
    checked_at: datetime | None = None


@dataclass
class RegistryStatus:
    reachable: bool | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    unreachable_since: datetime | None = None
    last_checked: datetime | None = None


class ModelHolder:
    def __init__(self, names: list[str]) -> None:
        self.names = tuple(names)
        self._models: dict[str, ServedModel] = {}
        self.status = {n: ModelStatus(n) for n in names}

    def get(self, name: str) -> ServedModel:
        model = self._models.get(name)
        if model is not None:
            return model
        if name not in self.status:
            raise UnknownModel(f"model '{name}' is not served here; served models: {', '.join(self.names)}")
        why = self.status[name].error or "it is still loading"
        raise ModelNotReady(f"model '{name}' has no version loaded yet ({why}); retry shortly")

    def current(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def models(self) -> dict[str, ServedModel]:
        return self._models

    def swap(self, model: ServedModel) -> ServedModel | None:
        old = self._models.get(model.name)
        self._models = {**self._models, model.name: model}  # one reference assignment: atomic for readers
        return old

    @property
    def ready(self) -> bool:
        return all(n in self._models for n in self.names)


class ChampionWatcher:
    def __init__(
        self,
        holder: ModelHolder,
        platform: Settings,
        settings: ServingSettings,
        metrics: ServingMetrics,
        on_swap: Callable[[ServedModel, ServedModel | None], None] | None = None,
    ) -> None:
        self.holder = holder
        self.platform = platform
        self.settings = settings
        self.metrics = metrics
        self.on_swap = on_swap
        self.registry = RegistryStatus()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signal_mtime = self._signal_stamp()
        self._done = threading.Condition()
        self._force_pending = False
        self._running = False
        self._completed = 0  # checks finished by the watcher thread
        self._last_report: dict[str, Any] | None = None

    # ------------------------------------------------------------------ checks
    def reload(self, wait: float) -> dict[str, Any] | None:
        """Ask the watcher thread for a forced check; its report, or None if not done within ``wait`` s.

        The check itself never runs on the caller's thread, so a slow or hung registry cannot
        hold a request longer than ``wait``; the check goes on and ``/ready`` shows its outcome.
        """
        with self._done:
            self._force_pending = True
            target = self._completed + (2 if self._running else 1)  # a running check may predate the request
            self._wake.set()
            if not self._done.wait_for(lambda: self._completed >= target, timeout=wait):
                return None
            return self._last_report

    def check(self, *, force: bool = False) -> dict[str, Any]:
        """Resolve every model's champion and swap in new versions; returns what happened."""
        with self._lock:
            return self._check(force)

    def _check(self, force: bool) -> dict[str, Any]:
        now = datetime.now(UTC)
        outcome: dict[str, Any] = {}
        timeout = self.settings.registry_timeout_seconds
        registry_uri = self.platform.resolved_registry_uri()
        rest = registry_uri.startswith(("http://", "https://"))
        try:
            loader.probe_tracking_server(self.platform.tracking_uri, timeout)
            client = loader.mlflow_client(self.platform)
        except RegistryUnavailable as exc:
            self._registry_down(str(exc), now)
            return {"registry": self._registry_dict(), "models": {}}
        registry_ok = True
        for name in self.holder.names:
            status = self.holder.status[name]
            status.checked_at = now
            current = self.holder.current(name)
            try:
                if rest:  # bounded: a server whose database hangs must not hold the watcher for minutes
                    ref = loader.champion_ref_rest(registry_uri, name, timeout)
                else:
                    ref = loader.champion_ref(client, name)
            except RegistryUnavailable as exc:
                self._registry_down(str(exc), now)
                registry_ok = False
                outcome[name] = {"version": current.version if current else None, "changed": False, "error": str(exc)}
                continue
            if ref is None:
                status.champion = None
                status.error = f"registered model '{name}' has no @champion alias (train and promote a version)"
                outcome[name] = {"version": current.version if current else None, "changed": False, "error": status.error}
                continue
            status.champion = ref.version
            if current is not None and current.version == ref.version:
                status.error = None
                outcome[name] = {"version": current.version, "changed": False}
                continue
            if status.failed_version == ref.version and not force:
                outcome[name] = {"version": current.version if current else None, "changed": False, "error": status.error}
                continue
            try:
                model = loader.load_version(self.platform, self.settings, ref, client)
            except ModelLoadError as exc:
                status.error, status.failed_version = str(exc), ref.version
                self.metrics.model_load_failures.labels(name).inc()
                logger.error("%s; still serving %s", exc, f"v{current.version}" if current else "nothing")
                outcome[name] = {"version": current.version if current else None, "changed": False, "error": str(exc)}
                continue
            old = self.holder.swap(model)
            status.error, status.failed_version = None, None
            self._swapped(model, old)
            outcome[name] = {"version": model.version, "changed": True, "previous": old.version if old else None}
        if registry_ok:
            self._registry_up(now)
        return {"registry": self._registry_dict(), "models": outcome}

    def _swapped(self, model: ServedModel, old: ServedModel | None) -> None:
        if old is not None:
            self.metrics.model_loaded.labels(old.name, old.version).set(0)
            self.metrics.swaps.labels(model.name).inc()
            logger.warning("%s: @champion moved v%s -> v%s; now serving v%s", model.name, old.version, model.version, model.version)
        else:
            logger.info("%s: serving v%s", model.name, model.version)
        self.metrics.model_loaded.labels(model.name, model.version).set(1)
        if self.on_swap is not None:
            self.on_swap(model, old)

    def _registry_down(self, message: str, now: datetime) -> None:
        self.registry.last_checked = now
        if self.registry.reachable is not False:
            logger.warning("%s", message)
            self.registry.unreachable_since = now
        self.registry.reachable = False
        self.registry.last_error = message
        self.metrics.registry_up.set(0)
        self.metrics.registry_errors.inc()

    def _registry_up(self, now: datetime) -> None:
        if self.registry.reachable is False:
            logger.warning("tracking server %s reachable again", self.platform.tracking_uri)
        self.registry.reachable = True
        self.registry.last_checked = now
        self.registry.last_success = now
        self.registry.unreachable_since = None
        self.metrics.registry_up.set(1)

    def _registry_dict(self) -> dict[str, Any]:
        r = self.registry
        return {
            "tracking_uri": _without_password(self.platform.tracking_uri),
            "reachable": r.reachable,
            "last_checked": r.last_checked.isoformat() if r.last_checked else None,
            "last_success": r.last_success.isoformat() if r.last_success else None,
            "unreachable_since": r.unreachable_since.isoformat() if r.unreachable_since else None,
            "last_error": r.last_error if r.reachable is False else None,
        }

    def registry_status(self) -> dict[str, Any]:
        return self._registry_dict()

    # --------------------------------------------------------------- the loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def request_check(self) -> None:
        self._wake.set()

    def signal_others(self) -> None:
        """Make sibling workers check now (they watch the signal file's mtime)."""
        path = self.settings.reload_signal_file
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            self._signal_mtime = self._signal_stamp()
        except OSError as exc:
            logger.warning("cannot touch the reload signal file %s: %s", path, exc)

    def _signal_stamp(self) -> int | None:
        path: Path | None = self.settings.reload_signal_file
        try:
            return path.stat().st_mtime_ns if path is not None else None
        except OSError:
            return None

    def _run(self) -> None:
        poll = self.settings.poll_interval_seconds
        tick = min(poll, 1.0) if self.settings.reload_signal_file is not None else poll
        last = time.monotonic()
        while not self._stop.is_set():
            interval = poll if self.holder.ready else min(poll, 5.0)
            woken = self._wake.wait(min(tick, interval))
            self._wake.clear()
            if self._stop.is_set():
                return
            stamp = self._signal_stamp()
            signalled = stamp is not None and stamp != self._signal_mtime
            self._signal_mtime = stamp
            with self._done:
                forced, self._force_pending = self._force_pending, False
                if woken or signalled or forced or time.monotonic() - last >= interval:
                    self._running = True
                else:
                    continue
            last = time.monotonic()
            report: dict[str, Any] | None = None
            try:
                report = self.check(force=signalled or forced)
            except Exception as exc:  # the watcher must survive anything a check throws
                logger.exception("champion check failed")
                report = {"registry": self._registry_dict(), "models": {}, "error": str(exc)}
            finally:
                with self._done:
                    self._running = False
                    self._completed += 1
                    self._last_report = report
                    self._done.notify_all()


def _without_password(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def health_request(uri: str) -> tuple[str, dict[str, str]]:
    """The tracking server's ``/health`` URL without credentials, and the headers that carry them.

    The MLflow client authenticates with the ``user:password@`` of the tracking URI (or
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``) as HTTP basic auth, as MLflow's
    basic-auth app expects; urllib does neither, so the probe sends the same header itself.
    """
    import base64
    import os
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    user, password = parts.username, parts.password
    if parts.username is not None:
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        parts = parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
        user, password = unquote(user or ""), unquote(password or "")
    else:
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    url = urlunsplit(parts).rstrip("/") + "/health"
    if not user and not password:
        return url, {}
    token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
    return url, {"Authorization": f"Basic {token}"}
