"""Domain exceptions. The CLI and the API turn these into one-line messages / 4xx."""

from __future__ import annotations


class LedgerlineError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class DataError(LedgerlineError):
    """The input data cannot be used as given (missing file, bad column, junk values)."""


class SpecError(LedgerlineError):
    """A dataset spec (YAML) is malformed or contradicts the data."""


class ValidationFailed(LedgerlineError):
    """The data failed its Great Expectations suite; nothing was trained."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class SourceError(DataError):
    """A data source of a training window could not be read (connection refused, query error, missing
    partition, bad credentials); the message is one line naming the source and the window."""


class NothingNew(LedgerlineError):
    """Not an error for the user: the training window holds no rows (every source read 0 rows)."""


class SnapshotConflict(LedgerlineError):
    """A snapshot for this logical date already exists with different content."""


class RegistryError(LedgerlineError):
    """The model registry is not in the state an operation needs (no champion, no previous version)."""


class InvalidName(LedgerlineError):
    """A model or dataset name that cannot be used (it would escape the data folder or break registry rules)."""


class AlreadyTrained(LedgerlineError):
    """Not an error for the user: the champion was trained from the same snapshot, spec and parameters."""


class Terminated(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an Exception: nothing may swallow it
    """The process got SIGTERM; raised from the signal handler so open runs end FAILED on the way out."""
