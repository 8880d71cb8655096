"""Serving's domain errors. Only :mod:`serving.http_errors` turns them into HTTP statuses."""

from __future__ import annotations

from typing import Any

from ledgerline.errors import LedgerlineError


class ServingError(LedgerlineError):
    """Base class; the message says what is wrong and what to do."""


class MalformedRequest(ServingError):
    """The body is not JSON, or not an object / array of objects."""


class InvalidRecords(ServingError):
    """The records break the model's request schema; ``errors`` lists them field by field."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class UnsupportedMediaType(ServingError):
    """The body is declared as something the endpoint does not read (e.g. text/plain on predict)."""


class BatchTooLarge(ServingError):
    """More records (or bytes) than one request may carry."""


class BodyTimeout(ServingError):
    """The client did not send the whole request body in time."""


class UnknownModel(ServingError):
    """The model is not one this service serves."""


class ModelNotReady(ServingError):
    """The model is configured but no version is loaded (yet)."""


class ModelLoadError(ServingError):
    """A registered version cannot be served (missing artifact, unexpected structure)."""


class RegistryUnavailable(ServingError):
    """The tracking server / registry cannot be reached."""


class LogBufferFull(ServingError):
    """The prediction log buffer is full (database away too long); the prediction was not served."""


class UnknownPrediction(ServingError):
    """Feedback names a prediction id that was never logged."""


class UnknownSeries(ServingError):
    """A series a forecasting model version has no forecast for."""


class FeedbackConflict(ServingError):
    """Feedback for this prediction was already recorded with a different label."""


class StoreUnavailable(ServingError):
    """The app database cannot be reached right now."""


class AuthError(ServingError):
    """No key (``missing=True``) or a key that does not grant this operation."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing
