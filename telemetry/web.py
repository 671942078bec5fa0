"""What every HTTP router depends on, shared by the API's own routers and each kind's.

The app lifespan (``api.app``) owns the resources and keeps them in ``app.state.resources``;
routes reach the settings and the database pool only through the dependencies below. Query
models compose (a time window, a page) and are validated as a whole; cursors are opaque.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal, Protocol, Self

import asyncpg
from fastapi import Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from telemetry.errors import UnavailableError, ValidationError
from telemetry.settings import Settings

__all__ = [
    "AppResources",
    "LineString",
    "Point",
    "PoolDep",
    "QueryModel",
    "SettingsDep",
    "TimeWindow",
    "decode_cursor",
    "encode_cursor",
    "get_pool",
    "get_settings",
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


class QueryModel(BaseModel):
    """Base of query-string models: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class TimeWindow(QueryModel):
    """An optional window ``[since, until)``; times must carry a UTC offset."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

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


# --- GeoJSON geometries ----------------------------------------------------------------------


class LineString(BaseModel):
    type: Literal["LineString"]
    coordinates: list[tuple[float, float]]


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: tuple[float, float]
