"""Password hashing with argon2id (argon2-cffi), and the generated passwords and tokens.

Hashing is deliberately slow and memory-hard; it runs in a worker thread so that the event
loop keeps serving, and at most :data:`MAX_CONCURRENT_HASHES` at a time per process so that a
burst of logins cannot exhaust memory (each takes the hasher's memory cost, 64 MiB by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from telemetry.errors import ValidationError

__all__ = [
    "MAX_CONCURRENT_HASHES",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "TOKEN_PREFIX",
    "check_password",
    "generate_password",
    "generate_token",
    "hash_password",
    "token_digest",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_CONCURRENT_HASHES = 2
#: Tokens start with this, so that a leaked one is recognisable (e.g. by secret scanners).
TOKEN_PREFIX = "tlm_"

# argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, t=3, 64 MiB,
# p=4); the parameters are stored in each hash, so changing them later rehashes at login.
_HASHER = PasswordHasher()
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def check_password(password: str) -> str:
    """``password`` if it is acceptable for an account, else :class:`ValidationError`."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    if "\x00" in password:
        raise ValidationError("a password must not contain NUL")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("a password must be valid Unicode text") from None
    return password


def generate_password() -> str:
    """A random password (128 bits, URL-safe characters)."""
    return secrets.token_urlsafe(16)


def generate_token() -> str:
    """A new opaque bearer token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What is stored of a token: its SHA-256. (Tokens are random, so a fast hash is enough;
    passwords are not, hence argon2 for them.)"""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _hash(password: str) -> str:
    with _SLOTS:
        return _HASHER.hash(password)


def _verify(encoded: str, password: str) -> tuple[bool, bool]:
    with _SLOTS:
        try:
            _HASHER.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False, False
        return True, _HASHER.check_needs_rehash(encoded)


async def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of ``password``, computed in a worker thread."""
    return await asyncio.to_thread(_hash, password)


@cache
def _decoy() -> str:
    # A real hash to verify against when the name is unknown, so that an unknown name costs as
    # long as a wrong password and the timing does not tell which names exist.
    return _HASHER.hash(secrets.token_urlsafe(16))


async def verify_password(encoded: str | None, password: str) -> tuple[bool, bool]:
    """Whether ``password`` matches ``encoded`` (None: verify against a decoy and fail), and
    whether the hash should be recomputed with the current parameters."""
    if encoded is None:
        await asyncio.to_thread(_verify, await asyncio.to_thread(_decoy), password)
        return False, False
    return await asyncio.to_thread(_verify, encoded, password)
