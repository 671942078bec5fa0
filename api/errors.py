"""The one place where domain errors become HTTP responses.

Every error body has the shape ``{"error": code, "detail": message}``. Errors outside the
mapping are not translated: they stay server errors and reach the log with their traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from telemetry.errors import (
    ConflictError,
    NotFoundError,
    TelemetryError,
    UnavailableError,
    ValidationError,
)

__all__ = ["install_error_handlers"]


#: Domain error → (HTTP status, stable error code); subclasses take their base's entry. Other
#: domain errors (e.g. RoadNetworkError) are not client-facing and stay server errors.
STATUS: dict[type[TelemetryError], tuple[int, str]] = {
    NotFoundError: (404, "not_found"),
    ConflictError: (409, "conflict"),
    ValidationError: (422, "invalid"),
    UnavailableError: (503, "unavailable"),
}


def _handler(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": code, "detail": str(exc)}, status_code=status)

    return handle


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    detail = "; ".join(
        f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors
    )
    body = {"error": "invalid_request", "detail": detail, "errors": errors}
    return JSONResponse(jsonable_encoder(body), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the domain-error and request-validation handlers on ``app``."""
    for error, (status, code) in STATUS.items():
        app.add_exception_handler(error, _handler(status, code))
    app.add_exception_handler(RequestValidationError, _request_invalid)
