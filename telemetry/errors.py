"""The domain error tree. Library errors become these where they enter; only the HTTP layer
maps them to status codes."""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "IngestFailedError",
    "NotFoundError",
    "RateLimitedError",
    "RoadNetworkError",
    "TelemetryError",
    "UnauthorizedError",
    "UnavailableError",
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


class UnauthorizedError(TelemetryError):
    """No valid credentials: no token, or one that is unknown, expired or revoked, or a wrong
    name or password at login. ``invalid_token`` tells a token that was presented but refused
    from none at all (RFC 6750 answers them differently)."""

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token


class ForbiddenError(TelemetryError):
    """The account is known but its role does not allow the action."""


class RateLimitedError(TelemetryError):
    """Too many attempts (failed logins) from one name or address; try again after
    ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RoadNetworkError(TelemetryError):
    """A road network file could not be read or holds no usable roads."""


class UnavailableError(TelemetryError):
    """A dependency (the database, the broker) cannot be reached right now."""


class IngestFailedError(TelemetryError):
    """The ingest worker stopped working (a long-lived task died, or failures no single
    message explains): the process should exit and be restarted; the broker redelivers
    whatever was not acknowledged."""
