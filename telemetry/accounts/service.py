"""Accounts and tokens: adding and changing accounts (audited), logging in with the throttle,
and finding the principal a bearer token belongs to.

Routes and the ``telemetry users`` command call these; these call the repository, the
password hashing and the audit log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from telemetry.accounts import repository
from telemetry.accounts.model import Principal, Role, check_name
from telemetry.accounts.passwords import (
    check_password,
    generate_password,
    generate_token,
    hash_password,
    token_digest,
    verify_password,
)
from telemetry.errors import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
)
from telemetry.settings import Settings
from telemetry.store import audit
from telemetry.store.audit import Actor

__all__ = [
    "IssuedToken",
    "add_account",
    "change_account",
    "issue_token",
    "list_accounts",
    "login",
    "logout",
    "principal_for_token",
    "revoke_tokens",
    "set_password",
]

_WRONG = "wrong name or password"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A bearer token just issued: the token itself (shown once, stored only as a digest)."""

    token: str
    expires_at: dt.datetime
    expires_in: int
    account: str
    role: Role


async def add_account(
    pool: asyncpg.Pool, actor: Actor, *, name: str, role: Role, password: str | None = None
) -> tuple[dict[str, Any], str | None]:
    """Add an account; the account and the generated password (None when ``password`` was
    given). :class:`ValidationError` for a bad name or password, :class:`ConflictError` if
    the name is taken."""
    check_name(name)
    generated = None
    if password is None:
        password = generated = generate_password()
    check_password(password)
    password_hash = await hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        account = await repository.insert_account(
            conn, name=name, role=Role(role).value, password_hash=password_hash
        )
        await audit.record(
            conn,
            actor,
            action="account.create",
            entity="account",
            entity_id=name,
            before=None,
            after=account,
        )
    return account, generated


async def list_accounts(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every account by name (without password hashes), with its count of live tokens."""
    return await repository.list_accounts(pool)


async def change_account(
    pool: asyncpg.Pool,
    actor: Actor,
    name: str,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
) -> dict[str, Any]:
    """Change an account's role and/or disable or enable it; the account.

    Disabling revokes its tokens at once. :class:`NotFoundError` for an unknown account;
    :class:`ConflictError` when the change would leave no enabled admin.
    """
    async with pool.acquire() as conn, conn.transaction():
        admins = await repository.lock_enabled_admins(conn)
        before = await repository.lock_account(conn, name)
        if before is None:
            raise NotFoundError(f"no account {name!r}")
        new_role = Role(role or before["role"])
        new_disabled = before["disabled"] if disabled is None else disabled
        if name in admins and (new_role is not Role.ADMIN or new_disabled) and len(admins) == 1:
            raise ConflictError(f"{name!r} is the only enabled admin; add another admin first")
        after = await repository.update_account(
            conn, before["id"], role=new_role.value, disabled=new_disabled
        )
        if new_disabled:
            await repository.revoke_account_tokens(conn, before["id"])
        if after != before:
            await audit.record(
                conn,
                actor,
                action="account.update",
                entity="account",
                entity_id=name,
                before=before,
                after=after,
            )
    return after


async def set_password(
    pool: asyncpg.Pool, actor: Actor, name: str, password: str | None = None
) -> str | None:
    """Replace an account's password and revoke its tokens; the generated password (None
    when ``password`` was given)."""
    generated = None
    if password is None:
        password = generated = generate_password()
    check_password(password)
    password_hash = await hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        account = await repository.lock_account(conn, name)
        if account is None:
            raise NotFoundError(f"no account {name!r}")
        await repository.update_password(conn, account["id"], password_hash)
        revoked = await repository.revoke_account_tokens(conn, account["id"])
        await audit.record(
            conn,
            actor,
            action="account.password",
            entity="account",
            entity_id=name,
            before=None,
            after={"password": "changed", "tokens_revoked": revoked},
        )
    return generated


async def revoke_tokens(pool: asyncpg.Pool, actor: Actor, name: str) -> int:
    """Revoke every live token of an account (it must log in again); how many there were."""
    async with pool.acquire() as conn, conn.transaction():
        account = await repository.lock_account(conn, name)
        if account is None:
            raise NotFoundError(f"no account {name!r}")
        revoked = await repository.revoke_account_tokens(conn, account["id"])
        await audit.record(
            conn,
            actor,
            action="account.revoke_tokens",
            entity="account",
            entity_id=name,
            before=None,
            after={"tokens_revoked": revoked},
        )
    return revoked


async def issue_token(
    pool: asyncpg.Pool, actor: Actor, name: str, *, ttl_s: int, client: str | None = None
) -> IssuedToken:
    """Issue a token for an enabled account without its password (for the command line: a
    token for a script or a simulator); audited."""
    token = generate_token()
    async with pool.acquire() as conn, conn.transaction():
        account = await repository.lock_account(conn, name)
        if account is None:
            raise NotFoundError(f"no account {name!r}")
        if account["disabled"]:
            raise ConflictError(f"account {name!r} is disabled")
        token_id, expires_at = await repository.insert_token(
            conn, account["id"], token_digest(token), ttl_s=ttl_s, client=client
        )
        await audit.record(
            conn,
            actor,
            action="account.issue_token",
            entity="account",
            entity_id=name,
            before=None,
            after={"token_id": token_id, "expires_at": expires_at},
        )
    return IssuedToken(
        token=token,
        expires_at=expires_at,
        expires_in=ttl_s,
        account=name,
        role=Role(account["role"]),
    )


async def login(
    pool: asyncpg.Pool, settings: Settings, *, name: str, password: str, client: str
) -> IssuedToken:
    """Check ``name`` and ``password`` and issue a token for ``settings.token_ttl_s``.

    Every attempt counts against the client address and then the name before the password is
    checked; past ``login_max_failures_per_address`` or ``…_per_user`` in the current window it
    is :class:`RateLimitedError` (with the seconds until the window ends), whatever the
    password. A success takes its attempt back. A wrong password, an unknown name and a
    disabled account are one and the same :class:`UnauthorizedError`.
    """
    window = settings.login_window_s
    user_key, address_key = f"user:{name}", f"addr:{client}"
    async with pool.acquire() as conn:
        await repository.purge_expired(conn, window_s=window)
        for key, limit, what in (
            (address_key, settings.login_max_failures_per_address, "this address"),
            (user_key, settings.login_max_failures_per_user, "this name"),
        ):
            failures, retry_after = await repository.count_failure(conn, key, window_s=window)
            if failures > limit:
                raise RateLimitedError(
                    f"too many failed logins for {what}; try again in {retry_after} s",
                    retry_after_s=max(1, retry_after),
                )
        account = await repository.get_account(conn, name)
    # Hashing takes a while: no connection is held meanwhile.
    ok, rehash = await verify_password(
        None if account is None else account["password_hash"], password
    )
    if account is None or not ok or account["disabled"]:
        raise UnauthorizedError(_WRONG)
    new_hash = await hash_password(password) if rehash else None
    token = generate_token()
    async with pool.acquire() as conn, conn.transaction():
        await repository.forget_failure(conn, user_key=user_key, address_key=address_key)
        if new_hash is not None:
            await repository.update_password(conn, account["id"], new_hash)
        _, expires_at = await repository.insert_token(
            conn, account["id"], token_digest(token), ttl_s=settings.token_ttl_s, client=client
        )
    return IssuedToken(
        token=token,
        expires_at=expires_at,
        expires_in=settings.token_ttl_s,
        account=account["name"],
        role=Role(account["role"]),
    )


async def principal_for_token(pool: asyncpg.Pool, token: str) -> Principal:
    """The principal ``token`` belongs to, or :class:`UnauthorizedError` if it is unknown,
    expired or revoked, or its account is disabled."""
    row = await repository.principal_row(pool, token_digest(token))
    if row is None:
        raise UnauthorizedError("invalid, expired or revoked token", invalid_token=True)
    return Principal(
        account_id=row["account_id"],
        name=row["name"],
        role=Role(row["role"]),
        token_id=row["token_id"],
    )


async def logout(pool: asyncpg.Pool, principal: Principal) -> None:
    """Revoke the token the request was made with."""
    await repository.revoke_token(pool, principal.token_id)
