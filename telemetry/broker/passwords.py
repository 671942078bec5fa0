"""MQTT passwords: generated here, stored only as PBKDF2-HMAC-SHA512 hashes.

One hash serves both brokers the project documents: Mosquitto reads it as a password-file line
(``$7$<iterations>$<base64 salt>$<base64 key>``, what ``mosquitto_passwd`` writes since 2.0),
and EMQX's pbkdf2 authenticator compares the lower-case hex of the same derived key, using the
salt column's bytes as the salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["ITERATIONS", "PasswordHash", "generate_password", "hash_password"]

# Passwords are generated (256 random bits), never chosen by people, so guessing them from a
# leaked hash is hopeless at any iteration count; the count only prices every CONNECT, which
# the broker pays again whenever a fleet reconnects at once. EMQX takes the count from its
# configuration, not per row: change it only together with that configuration.
ITERATIONS = 1_000
_KEY_BYTES = 64  # SHA-512's output: EMQX's default derived-key length for sha512


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """The stored form of one password."""

    salt: str
    key_hex: str
    iterations: int

    def mosquitto(self) -> str:
        """The password as a Mosquitto 2.0 password-file entry (after ``username:``)."""
        salt = base64.b64encode(self.salt.encode()).decode()
        key = base64.b64encode(bytes.fromhex(self.key_hex)).decode()
        return f"$7${self.iterations}${salt}${key}"

    def matches(self, password: str) -> bool:
        """Whether ``password`` is the one this hash was made from."""
        key = _derive(password, self.salt, self.iterations)
        return hmac.compare_digest(key.hex(), self.key_hex)


def generate_password() -> str:
    """A new random password: 256 bits, URL- and shell-safe."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, iterations: int = ITERATIONS) -> PasswordHash:
    """Hash ``password`` with a new random salt."""
    # 12 characters, as long as mosquitto_passwd's salt; text so that EMQX reads the same bytes.
    salt = secrets.token_urlsafe(9)
    return PasswordHash(salt, _derive(password, salt, iterations).hex(), iterations)


def _derive(password: str, salt: str, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt.encode(), iterations, _KEY_BYTES)
