"""The domain error tree. Library errors become these where they enter; only the HTTP layer
maps them to status codes."""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "IngestFailedError",
    "NotFoundError",
    "RoadNetworkError",
    "TelemetryError",
    "UnavailableError",
    "UnsupportedLibraryError",
    "ValidationError",
]


class TelemetryError(Exception):
    """Base of every error the project raises on purpose."""


class NotFoundError(TelemetryError):
    """The named thing (alert, vehicle, segment, …) does not exist."""


class ConflictError(TelemetryError):
    """The request conflicts with the current state (e.g. resolving a resolved alert)."""


class ValidationError(TelemetryError):
    """Input that is well-formed but not acceptable."""


class RoadNetworkError(TelemetryError):
    """A road network file could not be read or holds no usable roads."""


class UnavailableError(TelemetryError):
    """A dependency (the database, the broker) cannot be reached right now."""


class UnsupportedLibraryError(TelemetryError):
    """An installed library is not the version that the project's use of it was written for."""


class IngestFailedError(TelemetryError):
    """The ingest worker stopped working (a long-lived task died, or failures no single
    message explains): the process should exit and be restarted; the broker redelivers
    whatever was not acknowledged."""
