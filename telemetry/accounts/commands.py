"""``telemetry users …``: accounts from the command line, for whoever can reach the database
(the first admin is made here). Changes are audited as ``cli:<operating-system user>``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from telemetry.accounts import service
from telemetry.accounts.model import Role
from telemetry.errors import TelemetryError, UnavailableError
from telemetry.settings import Settings
from telemetry.store.audit import Actor

__all__ = ["add_parser", "cli_actor", "on_pool"]

T = TypeVar("T")


def cli_actor() -> Actor:
    """The command line as an actor: ``cli:<operating-system user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. in a container)
        user = "unknown"
    return Actor(account_id=None, name=f"cli:{user}")


def on_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run ``work`` on a small pool of the settings' database, for a command."""
    from telemetry.db import create_pool

    async def run() -> T:
        try:
            pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        except (OSError, asyncpg.PostgresError) as exc:
            raise UnavailableError(f"cannot connect to the database: {exc}") from exc
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def _password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    text = sys.stdin.readline().rstrip("\r\n")
    if not text:
        raise TelemetryError("--password-stdin: no password on standard input")
    return text


def _add(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)
    account, generated = on_pool(
        settings,
        lambda pool: service.add_account(
            pool, cli_actor(), name=args.name, role=Role(args.role), password=password
        ),
    )
    print(f"added {account['name']} ({account['role']})")
    if generated is not None:
        print("password (shown only this once; stored as an argon2id hash):")
        print(generated)
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    for a in on_pool(settings, service.list_accounts):
        state = f"disabled {a['disabled_at']:%Y-%m-%d %H:%M}" if a["disabled"] else "enabled"
        print(f"{a['name']}\t{a['role']}\t{state}\t{a['live_tokens']} live token(s)")
    return 0


def _show_change(settings: Settings, name: str, **change: Any) -> int:
    account = on_pool(
        settings, lambda pool: service.change_account(pool, cli_actor(), name, **change)
    )
    state = "disabled, its tokens revoked" if account["disabled"] else "enabled"
    print(f"{account['name']}: {account['role']}, {state}")
    return 0


def _set_role(settings: Settings, args: argparse.Namespace) -> int:
    return _show_change(settings, args.name, role=Role(args.role))


def _disable(settings: Settings, args: argparse.Namespace) -> int:
    return _show_change(settings, args.name, disabled=True)


def _enable(settings: Settings, args: argparse.Namespace) -> int:
    return _show_change(settings, args.name, disabled=False)


def _set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)
    generated = on_pool(
        settings, lambda pool: service.set_password(pool, cli_actor(), args.name, password)
    )
    print(f"{args.name}: password replaced, its tokens revoked")
    if generated is not None:
        print("password (shown only this once):")
        print(generated)
    return 0


def _revoke_tokens(settings: Settings, args: argparse.Namespace) -> int:
    revoked = on_pool(settings, lambda pool: service.revoke_tokens(pool, cli_actor(), args.name))
    print(f"{args.name}: {revoked} token(s) revoked")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    ttl = args.ttl_s or settings.token_ttl_s
    issued = on_pool(
        settings, lambda pool: service.issue_token(pool, cli_actor(), args.name, ttl_s=ttl)
    )
    expires = issued.expires_at.isoformat(timespec="seconds")
    print(f"token for {issued.account} ({issued.role}), expires {expires}:")
    print(issued.token)
    return 0


def add_parser(sub: Any) -> None:
    """Add ``users`` and its commands to the ``telemetry`` command's subparsers ``sub``."""
    users = sub.add_parser("users", help="people's accounts and roles").add_subparsers(
        dest="users", required=True
    )
    roles = [r.value for r in Role]

    def named(command: str, text: str, func: Callable[[Settings, argparse.Namespace], int]) -> Any:
        parser = users.add_parser(command, help=text)
        parser.add_argument("name")
        parser.set_defaults(func=func)
        return parser

    add = named("add", "add an account; prints a generated password last", _add)
    add.add_argument("--role", required=True, choices=roles)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    users.add_parser("list", help="every account").set_defaults(func=_list)
    named("set-role", "change an account's role", _set_role).add_argument("role", choices=roles)
    named("disable", "disable an account and revoke its tokens", _disable)
    named("enable", "enable a disabled account", _enable)
    pw = named("set-password", "replace a password (prints a generated one last)", _set_password)
    pw.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    named("revoke-tokens", "revoke an account's tokens (it must log in again)", _revoke_tokens)
    token = named("token", "issue a token for a script or simulator; prints it last", _token)
    token.add_argument("--ttl-s", type=int, help="lifetime in seconds (TELEMETRY_TOKEN_TTL_S)")
