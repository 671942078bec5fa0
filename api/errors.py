"""The one place where errors become HTTP responses.

Every error answer, whatever raised it, has the body :class:`telemetry.web.ErrorBody`:
``{"error": code, "detail": message}`` with one code per status (``telemetry.web.ERROR_CODES``),
plus ``errors`` when the request failed validation. Domain errors map by type; the framework's
own answers (no such route, a method the route lacks, an unreadable body) keep their status.
Other exceptions stay server errors: they answer 500 ``internal`` and reach the log with their
traceback. A 401 always carries ``WWW-Authenticate: Bearer`` (RFC 6750) and a 429
``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from telemetry.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    TelemetryError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)
from telemetry.web import ERROR_CODES, ErrorBody, ErrorCode, ErrorItem

__all__ = ["STATUS", "error_response", "install_error_handlers"]


#: Domain error → HTTP status; subclasses take their base's entry. Other domain errors (e.g.
#: RoadNetworkError) are not client-facing and stay server errors.
STATUS: dict[type[TelemetryError], int] = {
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    ValidationError: 422,
    RateLimitedError: 429,
    UnavailableError: 503,
}


def _text(value: object) -> str:
    # Input may carry lone surrogates (JSON escapes allow them); they cannot be sent as UTF-8.
    return str(value).encode("utf-8", "replace").decode("utf-8")


def error_response(
    status: int,
    detail: str,
    *,
    errors: list[ErrorItem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error body for ``status``: its code, ``detail`` and the validation ``errors``."""
    body = ErrorBody(error=_code(status), detail=_text(detail), errors=errors)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers
    )


def _code(status: int) -> ErrorCode:
    if status not in ERROR_CODES:
        status = 400 if status < 500 else 500
    return ERROR_CODES[status][0]


def _headers(exc: Exception) -> dict[str, str] | None:
    if isinstance(exc, UnauthorizedError):
        challenge = 'Bearer error="invalid_token"' if exc.invalid_token else "Bearer"
        return {"WWW-Authenticate": challenge}
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(exc.retry_after_s)}
    return None


def _domain(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(status, str(exc), headers=_headers(exc))

    return handle


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [
        ErrorItem(
            loc=[part if isinstance(part, int) else _text(part) for part in e.get("loc", ())],
            msg=_text(e.get("msg", "")),
            type=_text(e.get("type", "")),
        )
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(str(p) for p in item.loc)}: {item.msg}" for item in items)
    return error_response(422, detail, errors=items)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        detail = f"no route {where}"
    elif exc.status_code == 405:
        headers = exc.headers or {}
        allowed = next((v for k, v in headers.items() if k.lower() == "allow"), "")
        detail = f"{where} is not allowed; allowed: {allowed}"
    else:
        detail = exc.detail
    return error_response(exc.status_code, detail, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback and re-raises after this answer is sent.
    return error_response(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into :class:`ErrorBody` on ``app``."""
    for error, status in STATUS.items():
        app.add_exception_handler(error, _domain(status))
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
