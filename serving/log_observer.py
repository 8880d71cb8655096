"""Who watches the prediction log (the serving metrics), and how the log keeps its own complaints rare."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

logger = logging.getLogger("serving.predlog")


class LogObserver(Protocol):
    def log_written(self, rows: int) -> None: ...
    def log_write_failed(self) -> None: ...
    def log_refused(self, rows: int, dropped: bool) -> None: ...
    def log_state(self, pending_rows: int, capacity: int, full: bool, db_up: bool) -> None: ...


class NullObserver:
    def log_written(self, rows: int) -> None:
        pass

    def log_write_failed(self) -> None:
        pass

    def log_refused(self, rows: int, dropped: bool) -> None:
        pass

    def log_state(self, pending_rows: int, capacity: int, full: bool, db_up: bool) -> None:
        pass


class SafeObserver:
    """Metrics must never stop the writer: an observer error is logged once and ignored."""

    def __init__(self, inner: LogObserver) -> None:
        self.inner = inner
        self.warned = False

    def _call(self, name: str, *args: Any) -> None:
        try:
            getattr(self.inner, name)(*args)
        except Exception:
            if not self.warned:
                self.warned = True
                logger.exception("prediction log: metrics observer %s failed (ignored from now on)", name)

    def log_written(self, rows: int) -> None:
        self._call("log_written", rows)

    def log_write_failed(self) -> None:
        self._call("log_write_failed")

    def log_refused(self, rows: int, dropped: bool) -> None:
        self._call("log_refused", rows, dropped)

    def log_state(self, pending_rows: int, capacity: int, full: bool, db_up: bool) -> None:
        self._call("log_state", pending_rows, capacity, full, db_up)


class RateLimited:
    """Log a recurring condition at most once per ``every`` seconds, with a count."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = 0.0
        self.suppressed = 0

    def due(self) -> int | None:
        now = time.monotonic()
        if now - self.last >= self.every:
            n, self.suppressed, self.last = self.suppressed, 0, now
            return n
        self.suppressed += 1
        return None
