"""Every SQL statement about accounts, their tokens and the login throttle.

Functions that change an account take the connection of the caller's transaction, so that the
change and its audit row (``telemetry.store.audit``) commit together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias

import asyncpg

from telemetry.store.errors import constraint_errors

__all__ = [
    "ACCOUNT_COLUMNS",
    "count_failure",
    "forget_failure",
    "get_account",
    "insert_account",
    "insert_token",
    "list_accounts",
    "lock_account",
    "lock_enabled_admins",
    "principal_row",
    "purge_expired",
    "revoke_account_tokens",
    "revoke_token",
    "update_account",
    "update_password",
]

#: What the API and the audit log show of an account (never its password hash).
ACCOUNT_COLUMNS = "id, name, role, disabled_at IS NOT NULL AS disabled, disabled_at, created_at"

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def insert_account(
    conn: asyncpg.Connection, *, name: str, role: str, password_hash: str
) -> dict[str, Any]:
    """Add an account; :class:`ConflictError` if the name is taken."""
    with constraint_errors(conflict=f"account {name!r} already exists"):
        row = await conn.fetchrow(
            "INSERT INTO accounts (name, role, password_hash) VALUES ($1, $2, $3) "
            f"RETURNING {ACCOUNT_COLUMNS}",
            name,
            role,
            password_hash,
        )
    assert row is not None
    return dict(row)


async def get_account(conn: Conn, name: str) -> dict[str, Any] | None:
    """The account named ``name`` with its password hash, or None."""
    row = await conn.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE name = $1", name
    )
    return None if row is None else dict(row)


async def lock_account(conn: asyncpg.Connection, name: str) -> dict[str, Any] | None:
    """The account named ``name``, locked until the transaction ends, or None."""
    row = await conn.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1 FOR UPDATE", name
    )
    return None if row is None else dict(row)


async def lock_enabled_admins(conn: asyncpg.Connection) -> list[str]:
    """The names of the enabled admins, locked until the transaction ends (so that two admins
    cannot demote each other at once and leave none)."""
    rows = await conn.fetch(
        "SELECT name FROM accounts WHERE role = 'admin' AND disabled_at IS NULL "
        "ORDER BY id FOR UPDATE"
    )
    return [r["name"] for r in rows]


async def list_accounts(conn: Conn) -> list[dict[str, Any]]:
    """Every account by name, with how many unexpired, unrevoked tokens it holds."""
    rows = await conn.fetch(
        f"SELECT {ACCOUNT_COLUMNS}, (SELECT count(*) FROM api_tokens t WHERE t.account_id = a.id"
        " AND t.revoked_at IS NULL AND t.expires_at > now()) AS live_tokens "
        "FROM accounts a ORDER BY name"
    )
    return [dict(r) for r in rows]


async def update_account(
    conn: asyncpg.Connection, account_id: int, *, role: str, disabled: bool
) -> dict[str, Any]:
    """Set an account's role and whether it is disabled (keeping the time it was disabled at
    while it stays disabled)."""
    row = await conn.fetchrow(
        "UPDATE accounts SET role = $2, updated_at = now(), disabled_at = CASE WHEN $3 THEN "
        f"coalesce(disabled_at, now()) END WHERE id = $1 RETURNING {ACCOUNT_COLUMNS}",
        account_id,
        role,
        disabled,
    )
    assert row is not None
    return dict(row)


async def update_password(conn: Conn, account_id: int, password_hash: str) -> None:
    await conn.execute(
        "UPDATE accounts SET password_hash = $2, updated_at = now() WHERE id = $1",
        account_id,
        password_hash,
    )


# --- tokens --------------------------------------------------------------------------------


async def insert_token(
    conn: Conn, account_id: int, digest: bytes, *, ttl_s: int, client: str | None
) -> tuple[int, dt.datetime]:
    """Store a token's digest for ``ttl_s`` seconds; its id and expiry."""
    row = await conn.fetchrow(
        "INSERT INTO api_tokens (account_id, digest, expires_at, client) "
        "VALUES ($1, $2, now() + make_interval(secs => $3), $4) RETURNING id, expires_at",
        account_id,
        digest,
        float(ttl_s),
        client,
    )
    assert row is not None
    return int(row["id"]), row["expires_at"]


async def principal_row(conn: Conn, digest: bytes) -> dict[str, Any] | None:
    """The token with this digest and its account, if the token is live (neither expired nor
    revoked) and the account enabled; else None."""
    row = await conn.fetchrow(
        "SELECT t.id AS token_id, a.id AS account_id, a.name, a.role "
        "FROM api_tokens t JOIN accounts a ON a.id = t.account_id "
        "WHERE t.digest = $1 AND t.revoked_at IS NULL AND t.expires_at > now() "
        "AND a.disabled_at IS NULL",
        digest,
    )
    return None if row is None else dict(row)


async def revoke_token(conn: Conn, token_id: int) -> None:
    await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
    )


async def revoke_account_tokens(conn: Conn, account_id: int) -> int:
    """Revoke every live token of an account; how many there were."""
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() "
        "WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > now()",
        account_id,
    )
    return int(status.split()[-1])


async def purge_expired(conn: Conn, *, window_s: int) -> None:
    """Forget tokens expired over a day ago and login windows that have ended."""
    await conn.execute("DELETE FROM api_tokens WHERE expires_at < now() - interval '1 day'")
    await conn.execute(
        "DELETE FROM login_throttle WHERE window_start <= now() - make_interval(secs => $1)",
        float(window_s),
    )


# --- the login throttle --------------------------------------------------------------------

_COUNT = """
    INSERT INTO login_throttle AS t (key, failures, window_start) VALUES ($1, 1, now())
    ON CONFLICT (key) DO UPDATE SET
        failures = CASE WHEN t.window_start <= now() - make_interval(secs => $2)
                        THEN 1 ELSE t.failures + 1 END,
        window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $2)
                            THEN now() ELSE t.window_start END
    RETURNING failures,
        ceil(extract(epoch FROM t.window_start + make_interval(secs => $2) - now()))::int
            AS retry_after_s
"""


async def count_failure(conn: Conn, key: str, *, window_s: int) -> tuple[int, int]:
    """Count one attempt against ``key`` (before its outcome is known, so that concurrent
    attempts cannot slip past the limit); the count in the current window and the seconds
    until that window ends."""
    row = await conn.fetchrow(_COUNT, key, float(window_s))
    assert row is not None
    return int(row["failures"]), int(row["retry_after_s"])


async def forget_failure(conn: Conn, *, user_key: str, address_key: str) -> None:
    """A login succeeded: clear the name's count and take this attempt back from the
    address's."""
    await conn.execute("DELETE FROM login_throttle WHERE key = $1", user_key)
    await conn.execute(
        "UPDATE login_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1",
        address_key,
    )
