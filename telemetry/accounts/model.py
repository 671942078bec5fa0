"""Roles and the principal an authenticated request acts as."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from telemetry.errors import ValidationError
from telemetry.store.audit import Actor

__all__ = ["NAME_PATTERN", "Principal", "Role", "check_name"]

#: Account names: lower case letters, digits and ``.``, ``_``, ``@``, ``-``, starting with a
#: letter or digit, at most 64 characters (as the ``accounts.name`` check in migrations/0007).
NAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


class Role(StrEnum):
    """What an account may do; each role may do everything the roles before it may.

    - ``viewer``: read everything;
    - ``officer``: also acknowledge and resolve alerts, open and close incidents;
    - ``admin``: also change thresholds, limits, gates, tiers, vehicles and accounts, and read
      the audit log.
    """

    VIEWER = "viewer"
    OFFICER = "officer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.OFFICER: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class Principal(Actor):
    """The account a request's bearer token belongs to, and that token's id."""

    role: Role
    token_id: int


def check_name(name: str) -> str:
    """``name`` if it is a valid account name, else :class:`ValidationError`."""
    if _NAME.fullmatch(name) is None:
        raise ValidationError(
            f"invalid account name {name!r}: 1 to 64 lower case letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    return name
