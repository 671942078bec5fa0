"""Mosquitto's files as ``telemetry broker run`` writes them: the configuration (the project's
shared tuning plus the listeners and authentication of this deployment), the password file
and the ACL file, all rendered from the accounts."""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from telemetry.broker.passwords import PasswordHash
from telemetry.broker.repository import Credential
from telemetry.errors import ValidationError

__all__ = [
    "BASE_CONFIG",
    "Listeners",
    "ServiceAccount",
    "render_acl",
    "render_config",
    "render_passwords",
]

BASE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"

# What this module writes for each deployment; the shared file must leave them alone, or a
# listener it declares would bypass what is decided here.
_OWNED = (
    "listener",
    "port",
    "bind_address",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "per_listener_settings",
    "persistence_location",
    "pid_file",
    "user",
    "certfile",
    "keyfile",
    "plugin",
    "auth_plugin",
)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """An account of the service itself: its name, password hash and ACL topic lines."""

    username: str
    password: PasswordHash
    acl: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Listeners:
    """Where the broker listens: plain MQTT on ``bind``:``port``, and MQTT over TLS on
    ``bind``:``tls_port`` when a certificate and key are given."""

    port: int
    bind: str = "127.0.0.1"
    tls_port: int = 8883
    certfile: str | None = None
    keyfile: str | None = None


def render_config(base: str, listeners: Listeners, state_dir: Path) -> str:
    """The broker's configuration: ``base`` (the shared file) followed by this deployment's
    listeners, authentication and state directory. ``ValidationError`` if ``base`` sets any
    of them itself."""
    for number, line in enumerate(base.splitlines(), 1):
        words = line.split()
        if words and words[0] in _OWNED:
            raise ValidationError(
                f"the shared broker configuration sets {words[0]!r} (line {number}); "
                "`telemetry broker run` writes listeners, authentication and state itself"
            )
    state = state_dir.resolve()
    lines = [
        base.rstrip("\n"),
        "",
        "# ---- written by `telemetry broker run` for this deployment ----",
        "# Every client authenticates; the ACL lets each account only its own topics.",
        "allow_anonymous false",
        f"password_file {state / 'passwords'}",
        f"acl_file {state / 'acl'}",
        f"persistence_location {state}/",
        f"pid_file {state / 'mosquitto.pid'}",
        "log_dest stderr",
        # Run as the account that started the runner; Mosquitto's default (drop to
        # "mosquitto") could not read the state directory that account owns.
        f"user {getpass.getuser()}",
        f"listener {listeners.port} {listeners.bind}",
    ]
    if listeners.certfile and listeners.keyfile:
        lines += [
            f"listener {listeners.tls_port} {listeners.bind}",
            f"certfile {listeners.certfile}",
            f"keyfile {listeners.keyfile}",
        ]
    return "\n".join(lines) + "\n"


def render_passwords(
    services: Sequence[ServiceAccount], vehicles: Sequence[Credential], extra: str = ""
) -> str:
    """The password file: the service accounts, the enabled vehicles, then ``extra`` (lines
    in the same format, e.g. from ``mosquitto_passwd``) as given."""
    lines = [f"{s.username}:{s.password.mosquitto()}" for s in services]
    lines += [f"{v.vehicle_id}:{v.password.mosquitto()}" for v in vehicles]
    text = "\n".join(lines) + "\n"
    return text + extra if extra.endswith("\n") or not extra else text + extra + "\n"


def render_acl(
    services: Sequence[ServiceAccount],
    vehicles: Sequence[Credential],
    topic_prefix: str,
    extra: str = "",
) -> str:
    """The ACL file: ``extra`` first (so that a topic line it leaves without a ``user`` line
    cannot attach to one of ours), then each service account's lines, then one line per
    vehicle: write to ``{prefix}/{kind}/{vehicle_id}`` and nothing else."""
    out = [extra.rstrip("\n")] if extra.strip() else []
    for s in services:
        out += [f"user {s.username}", *s.acl]
    for v in vehicles:
        out += [f"user {v.vehicle_id}", f"topic write {topic_prefix}/{v.kind}/{v.vehicle_id}"]
    return "\n".join(out) + "\n"
