"""``/api/v1/auth``: log in for a bearer token (the OAuth2 password flow), log out, and who
the token belongs to. Logging in is the one ``/api/v1`` route that needs no token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status

from api.schemas import Me, Token
from telemetry.accounts import service as accounts
from telemetry.accounts.passwords import MAX_PASSWORD_LENGTH
from telemetry.web import (
    TEXT_PATTERN,
    PoolDep,
    SettingsDep,
    ViewerDep,
    error_responses,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=Token,
    responses=error_responses(400, 401, 422, 429, 503),
)
async def log_in(
    request: Request,
    response: Response,
    pool: PoolDep,
    settings: SettingsDep,
    username: Annotated[str, Form(min_length=1, max_length=64, pattern=TEXT_PATTERN)],
    password: Annotated[
        str, Form(min_length=1, max_length=MAX_PASSWORD_LENGTH, pattern=TEXT_PATTERN)
    ],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> Token:
    """Exchange a user name and password (``application/x-www-form-urlencoded``, as OAuth2's
    password grant) for a bearer token valid for ``expires_in`` seconds
    (TELEMETRY_TOKEN_TTL_S). 401 for a wrong name or password (or a disabled account);
    429 with ``Retry-After`` after too many failed logins for the name or from the address
    (TELEMETRY_LOGIN_MAX_FAILURES_PER_USER / _PER_ADDRESS in TELEMETRY_LOGIN_WINDOW_S)."""
    client = request.client.host if request.client is not None else "unknown"
    issued = await accounts.login(pool, settings, name=username, password=password, client=client)
    # RFC 6749 §5.1: token responses must not be cached.
    response.headers["Cache-Control"] = "no-store"
    return Token(access_token=issued.token, expires_in=issued.expires_in)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 503),
)
async def log_out(pool: PoolDep, principal: ViewerDep) -> Response:
    """Revoke the token this request is made with; every API process refuses it from now on."""
    await accounts.logout(pool, principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me, responses=error_responses(401, 503))
async def who_am_i(principal: ViewerDep) -> Me:
    """The account the token belongs to, and its role."""
    return Me(name=principal.name, role=principal.role)
