"""What every HTTP router depends on, shared by the API's own routers and each kind's.

The app lifespan (``api.app``) owns the resources and keeps them in ``app.state.resources``;
routes reach the settings and the database pool only through the dependencies below. Query
models compose (a time window, a page) and are validated as a whole; cursors are opaque.

Input is refused at the edge, before it reaches PostgreSQL: text never holds NUL (which
PostgreSQL's text cannot store) or lone surrogates, ids and cursors fit their columns, times
fit what both Python and PostgreSQL can represent, and body numbers are finite. The error body
every route answers with, and the OpenAPI ``responses`` that document it, are defined here too,
so that the kinds' routers need nothing from ``api``; ``api.errors`` maps errors to them.

So are the principal a request acts as and the role it needs: ``/api/v1`` requires a bearer
token of any role (``api.app`` puts :data:`require_viewer` on every router), and a route that
changes something takes :data:`OfficerDep` or :data:`AdminDep`, whose principal it records as
the one who made the change (docs/adr/0008).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, Self

import asyncpg
from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from telemetry.accounts import service as accounts
from telemetry.accounts.model import Principal, Role
from telemetry.errors import ForbiddenError, UnauthorizedError, UnavailableError, ValidationError
from telemetry.settings import Settings

__all__ = [
    "BIGINT_MAX",
    "ERROR_CODES",
    "INTEGER_MAX",
    "MAX_TIME",
    "MIN_TIME",
    "TEXT_PATTERN",
    "TOKEN_URL",
    "AdminDep",
    "AppResources",
    "BigintId",
    "BodyModel",
    "ErrorBody",
    "ErrorCode",
    "ErrorItem",
    "IntegerId",
    "LimitValue",
    "LineString",
    "Name",
    "Note",
    "OfficerDep",
    "Point",
    "PoolDep",
    "Principal",
    "QueryModel",
    "SettingsDep",
    "Text",
    "TimeWindow",
    "Timestamp",
    "ViewerDep",
    "Who",
    "authenticate",
    "cursor_id",
    "cursor_time",
    "decode_cursor",
    "encode_cursor",
    "error_responses",
    "get_pool",
    "get_principal",
    "get_settings",
    "require",
    "require_admin",
    "require_officer",
    "require_viewer",
]


class AppResources(Protocol):
    """What routes read of the app's resources (``api.deps.Resources``)."""

    settings: Settings
    pool: asyncpg.Pool | None
    database_error: str | None


def _resources(request: Request) -> AppResources:
    resources: AppResources = request.app.state.resources
    return resources


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return _resources(request).settings


def get_pool(request: Request) -> asyncpg.Pool:
    """The database pool, or :class:`UnavailableError` (503) while the database is unreachable."""
    resources = _resources(request)
    if resources.pool is None:
        reason = resources.database_error or "not connected yet"
        raise UnavailableError(f"database unavailable: {reason}")
    return resources.pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]


# --- who is asking -------------------------------------------------------------------------

TOKEN_URL = "/api/v1/auth/token"

# Declares the OAuth2 password flow in the OpenAPI document (the Authorize button of /docs);
# auto_error=False so that a missing token is answered by our own error body.
_bearer = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    scheme_name="bearer",
    description="POST a user name and password to " + TOKEN_URL + "; send the access_token"
    " as `Authorization: Bearer <token>`.",
    auto_error=False,
)


async def get_principal(pool: PoolDep, token: Annotated[str | None, Depends(_bearer)]) -> Principal:
    """The account the request's bearer token belongs to; :class:`UnauthorizedError` without
    a live token. (The pool comes first: with the database unreachable the answer is 503,
    since no token can be checked.)"""
    if not token:
        raise UnauthorizedError(f"this request needs a bearer token; log in at {TOKEN_URL}")
    return await accounts.principal_for_token(pool, token)


async def authenticate(request: Request) -> Principal:
    """:func:`get_principal` outside dependency injection, for a route whose need of a token
    depends on a setting (``/metrics``)."""
    return await get_principal(get_pool(request), await _bearer(request))


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency answering the principal when its role allows what ``role`` may do, and
    :class:`ForbiddenError` when it does not. (FastAPI caches :func:`get_principal` per
    request, so a router's and a route's requirement look the token up once.)"""

    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.role.allows(role):
            raise ForbiddenError(
                f"this needs the {role} role or higher; {principal.name} is {principal.role}"
            )
        return principal

    return dependency


require_viewer = require(Role.VIEWER)
require_officer = require(Role.OFFICER)
require_admin = require(Role.ADMIN)
#: The principal of a request any account may make.
ViewerDep = Annotated[Principal, Depends(require_viewer)]
#: The principal of a request that officers and admins may make (alerts, incidents).
OfficerDep = Annotated[Principal, Depends(require_officer)]
#: The principal of a request only admins may make (reference tables, accounts, audit).
AdminDep = Annotated[Principal, Depends(require_admin)]


# --- the error body --------------------------------------------------------------------------

ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "invalid",
    "too_many_requests",
    "internal",
    "unavailable",
]

#: HTTP status → the one ``error`` code answered with it, and what it means.
ERROR_CODES: dict[int, tuple[ErrorCode, str]] = {
    400: ("bad_request", "the body could not be read (e.g. JSON that is not UTF-8)"),
    401: (
        "unauthorized",
        "no valid bearer token (none, or one unknown, expired or revoked), or a wrong name or"
        " password at login (see WWW-Authenticate)",
    ),
    403: ("forbidden", "the token's account does not have the role this needs"),
    404: ("not_found", "the named resource, or the route, does not exist"),
    405: ("method_not_allowed", "the route exists but not with this method (see Allow)"),
    409: ("conflict", "the request conflicts with the current state"),
    422: (
        "invalid",
        "a parameter or the body is invalid: malformed, out of range, an unknown parameter,"
        " or a combination the operation's description rules out",
    ),
    429: ("too_many_requests", "too many failed logins; try again after Retry-After seconds"),
    500: ("internal", "an unexpected server error (logged)"),
    503: ("unavailable", "the database cannot be reached right now"),
}


class ErrorItem(BaseModel):
    """One problem with a request: where it is, what is wrong, and its kind."""

    loc: list[str | int] = Field(description="e.g. ['query', 'limit'] or ['body', 'lat']")
    msg: str
    type: str = Field(description="the validation error's kind, e.g. less_than_equal")


class ErrorBody(BaseModel):
    """Every error answer: a stable ``error`` code (one per HTTP status) and a message."""

    error: ErrorCode
    detail: str = Field(description="for people; do not parse")
    errors: list[ErrorItem] | None = Field(
        None, description="each problem, on a 422 from validating the request"
    )


#: Headers that always come with an error status.
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer` (RFC 6750), with `error="invalid_token"` when the'
            " token sent was refused",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds until the next attempt may be made",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring the error body (and its headers) for ``statuses``."""
    return {
        status: {
            "model": ErrorBody,
            "description": f"`{ERROR_CODES[status][0]}`: {ERROR_CODES[status][1]}",
            **({"headers": _ERROR_HEADERS[status]} if status in _ERROR_HEADERS else {}),
        }
        for status in statuses
    }


# --- bounded input ---------------------------------------------------------------------------

#: Text without NUL. (A pattern-constrained string also refuses lone surrogates, which JSON
#: escapes can produce and which cannot be encoded as UTF-8.)
TEXT_PATTERN = r"^[^\x00]*$"
#: Ids of ``bigint`` and ``integer`` columns (see migrations/).
BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
#: Times must lie within these (UTC), a day inside what Python's datetime can hold, so that
#: converting an offset or moving a window by a day cannot overflow.
MIN_TIME = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)

Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
Name = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Who = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Note = Annotated[Text, StringConstraints(max_length=2000)]

#: A limit in its own unit, bounded so that unit conversions and exceedance multiples
#: (C − S) / S stay finite; wider than any concentration a standard sets.
LimitValue = Annotated[float, Field(ge=1e-9, le=1e9, description="from 1e-9 to 1e9")]

BigintId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
IntegerId = Annotated[int, Path(ge=1, le=INTEGER_MAX)]


def _within_range(value: datetime) -> datetime:
    if not MIN_TIME <= value <= MAX_TIME:
        raise ValueError(f"must lie between {MIN_TIME.date()} and {MAX_TIME.date()} (UTC)")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_within_range)]


class QueryModel(BaseModel):
    """Base of query-string models: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True, allow_inf_nan=False)


class BodyModel(BaseModel):
    """Base of request bodies: unknown fields are an error, numbers must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TimeWindow(QueryModel):
    """An optional window ``[since, until)``; times must carry a UTC offset."""

    since: Timestamp | None = Field(
        None, description="with a UTC offset, from 0001-01-02 to 9999-12-30; before until"
    )
    until: Timestamp | None = Field(
        None, description="exclusive, with a UTC offset, from 0001-01-02 to 9999-12-30"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


def encode_cursor(listing: str, *parts: str) -> str:
    """An opaque cursor of ``listing`` that continues after the row keyed by ``parts``."""
    raw = f"{listing}:{'|'.join(parts)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(listing: str, cursor: str, parts: int) -> list[str]:
    """The ``parts`` key strings of a cursor of ``listing``, or :class:`ValidationError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError(f"invalid cursor {cursor!r}") from None
    body = raw.removeprefix(f"{listing}:")
    values = body.split("|")
    if body == raw or len(values) != parts:
        raise ValidationError(f"invalid cursor {cursor!r}")
    return values


_DIGITS = re.compile(r"[0-9]{1,19}")


def cursor_id(cursor: str, value: str, maximum: int = BIGINT_MAX) -> int:
    """The row id ``value`` of ``cursor``, or :class:`ValidationError` unless it is an id
    between 1 and ``maximum``."""
    if _DIGITS.fullmatch(value) is None or not 1 <= int(value) <= maximum:
        raise ValidationError(f"invalid cursor {cursor!r}")
    return int(value)


def cursor_time(cursor: str, value: str) -> datetime:
    """The time ``value`` of ``cursor`` (ISO 8601 with an offset, within
    :data:`MIN_TIME`..:data:`MAX_TIME`), or :class:`ValidationError`."""
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError(value)
        return _within_range(when)
    except ValueError:
        raise ValidationError(f"invalid cursor {cursor!r}") from None


# --- GeoJSON geometries ----------------------------------------------------------------------


class LineString(BaseModel):
    type: Literal["LineString"]
    coordinates: list[tuple[float, float]]


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: tuple[float, float]
