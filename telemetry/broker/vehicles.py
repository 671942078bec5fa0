"""Registering and revoking vehicles' broker accounts.

A vehicle's username is its id; its password is generated here, returned once and stored only
as a hash. Every change reaches the broker through the table's NOTIFY (see ``runner``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

import asyncpg

from telemetry.broker import repository
from telemetry.broker.passwords import generate_password, hash_password
from telemetry.errors import ConflictError, NotFoundError, ValidationError
from telemetry.hj212.station import Station
from telemetry.kinds.contract import Kind
from telemetry.kinds.walkthrough.record import DECLARED_UNITS, POLLUTANT_UNITS
from telemetry.store import audit
from telemetry.store.audit import Actor

__all__ = ["check_vehicle_id", "declared_units", "register", "register_simulated", "revoke"]

# Also the table's CHECK: nothing an MQTT topic level, an ACL or a password file treats
# specially ('/', '+', '#', ':', spaces), and the topic contract's 64 characters.
_VEHICLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_vehicle_id(vehicle_id: str) -> str:
    """``vehicle_id`` if it can be an account name, else ``ValidationError``."""
    if not _VEHICLE_ID.fullmatch(vehicle_id):
        raise ValidationError(
            f"vehicle id {vehicle_id!r}: 1 to 64 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return vehicle_id


def _kind(kind: str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        names = ", ".join(k.value for k in Kind)
        raise ValidationError(f"unknown vehicle kind {kind!r} (one of {names})") from None


async def register(
    conn: asyncpg.Connection,
    vehicle_id: str,
    kind: str,
    *,
    actor: Actor,
    new_password: bool = False,
    reserved: Collection[str] = (),
    hj212: Station | None = None,
    units: Mapping[str, str] | None = None,
) -> str | None:
    """Register a vehicle and return its new password (the only time it is seen).

    A vehicle already registered keeps its password unless ``new_password`` (then the old one
    stops working and the account is enabled again). ``reserved``: names the broker uses for
    its own accounts, which no vehicle may take. ``hj212``: its HJ 212 analyser (MN, PW,
    options, fixed position); given for a vehicle already registered without
    ``new_password``, only the analyser changes and None is returned. ``units``: its
    declared units, {channel: unit} from :func:`declared_units` (an empty unit removes a
    declaration), likewise. The change is audited as ``actor``'s."""
    check_vehicle_id(vehicle_id)
    if vehicle_id in reserved:
        raise ConflictError(f"{vehicle_id!r} is the name of one of the broker's own accounts")
    password = generate_password()
    row = (vehicle_id, _kind(kind).value, hash_password(password))
    async with conn.transaction():
        written = await repository.upsert(conn, [row], replace=new_password)
        if hj212 is not None:
            await _set_analyser(conn, hj212, actor)
        if units:
            await _set_units(conn, vehicle_id, dict(units), actor)
        if not written and (hj212 is not None or units):
            return None
        if not written:
            raise ConflictError(
                f"vehicle {vehicle_id!r} is already registered; give --new-password to issue a "
                "new password (the old one stops working)"
            )
        await audit.record(
            conn,
            actor,
            action="new_password" if new_password else "register",
            entity="vehicle",
            entity_id=vehicle_id,
            before=None,
            after={"vehicle_id": vehicle_id, "kind": row[1], "enabled": True},
        )
    return password


_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_OTHER_UNIT = re.compile(r"\S{1,32}")


def _unit_name(unit: str) -> str:
    """``µg/m³`` and the like in the spelling of :data:`DECLARED_UNITS`."""
    return unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("³", "3")


def declared_units(texts: Collection[str]) -> dict[str, str]:
    """Declared units from ``CHANNEL=UNIT`` texts (docs/domain.md §5.6): a walk-through
    pollutant (any case; ``PM2.5`` is ``pm25``) takes one of :data:`DECLARED_UNITS`, never a
    volume fraction for PM or TVOC, which have no single molar mass; any other channel (an
    extra channel of a portable instrument) takes any unit without spaces. ``CHANNEL=``
    removes the channel's declaration. A bad text is a ``ValidationError``, never a guess."""
    units: dict[str, str] = {}
    for text in texts:
        channel, eq, unit = text.partition("=")
        channel, unit = channel.strip(), unit.strip()
        if not eq or not _CHANNEL.fullmatch(channel):
            raise ValidationError(f"unit {text!r}: CHANNEL=UNIT, e.g. NO2=ppb")
        pollutant = channel.lower().replace(".", "")
        if pollutant in POLLUTANT_UNITS:
            channel, unit = pollutant, _unit_name(unit) if unit else ""
            if unit and unit not in DECLARED_UNITS:
                raise ValidationError(
                    f"unit {text!r}: a {pollutant} unit is one of {', '.join(DECLARED_UNITS)}"
                )
            if unit in ("ppb", "ppm") and pollutant in ("pm25", "pm10", "tvoc"):
                raise ValidationError(
                    f"unit {text!r}: {pollutant} has no single molar mass, so no volume unit"
                )
        elif unit and not _OTHER_UNIT.fullmatch(unit):
            raise ValidationError(f"unit {text!r}: 1 to 32 characters without spaces")
        units[channel] = unit
    return units


async def _set_units(
    conn: asyncpg.Connection, vehicle_id: str, units: dict[str, str], actor: Actor
) -> None:
    before, after = await repository.set_declared_units(conn, vehicle_id, units)
    await audit.record(
        conn,
        actor,
        action="declared_units",
        entity="vehicle",
        entity_id=vehicle_id,
        before={"units": before},
        after={"units": after},
    )


async def _set_analyser(conn: asyncpg.Connection, station: Station, actor: Actor) -> None:
    try:
        station.check()
    except (ValueError, KeyError) as exc:
        raise ValidationError(f"HJ 212 analyser of {station.vehicle_id!r}: {exc}") from None
    try:
        await repository.set_hj212(conn, station)
    except asyncpg.UniqueViolationError:
        raise ConflictError(f"MN {station.mn!r} is registered to another vehicle") from None
    except asyncpg.CheckViolationError as exc:
        raise ValidationError(f"HJ 212 analyser of {station.vehicle_id!r}: {exc}") from None
    after = {"hj212_mn": station.mn, "hj212_pw_set": station.pw is not None, **station.options()}
    if station.lat is not None:
        after["position"] = [station.lat, station.lon]
    await audit.record(
        conn,
        actor,
        action="hj212",
        entity="vehicle",
        entity_id=station.vehicle_id,
        before=None,
        after=after,
    )


async def register_simulated(
    conn: asyncpg.Connection, vehicles: Iterable[tuple[str, Kind]]
) -> dict[str, str]:
    """Register simulated vehicles with a new password each, returning {vehicle id: password}.

    A simulator calls this on every run. It refuses (``ConflictError``) a vehicle id a person
    registered, so that a simulation can never lock a real vehicle out."""
    wanted = list(vehicles)
    passwords = {check_vehicle_id(v): generate_password() for v, _ in wanted}
    rows = [(v, k.value, hash_password(passwords[v])) for v, k in wanted]
    written = await repository.upsert(conn, rows, replace=True, simulated=True)
    taken = sorted(set(passwords) - written)
    if taken:
        raise ConflictError(
            f"vehicle ids registered for real vehicles, not simulated ones: {', '.join(taken[:5])}"
            "; choose another id or prefix"
        )
    return passwords


async def revoke(conn: asyncpg.Connection, vehicle_id: str, *, actor: Actor) -> None:
    """Disable a vehicle's account: the broker disconnects it and refuses it from then on.
    The change is audited as ``actor``'s."""
    async with conn.transaction():
        if not await repository.disable(conn, vehicle_id):
            raise NotFoundError(f"no vehicle {vehicle_id!r} is registered")
        await audit.record(
            conn,
            actor,
            action="revoke",
            entity="vehicle",
            entity_id=vehicle_id,
            before={"vehicle_id": vehicle_id, "enabled": True},
            after={"vehicle_id": vehicle_id, "enabled": False},
        )


def analyser(
    vehicle_id: str,
    kind: str,
    mn: str,
    *,
    pw: str | None = None,
    position: str | None = None,
    tolerate: Collection[str] = (),
    position_fields: Collection[str] = (),
    timezone: str | None = None,
    units: Collection[str] = (),
) -> Station:
    """An HJ 212 analyser from the command line's texts: ``position`` ``LAT,LON``, each of
    ``position_fields`` ``LON_FIELD,LAT_FIELD``, each of ``units`` ``CODE=UNIT``."""
    from telemetry.hj212.packet import Deviation
    from telemetry.hj212.station import DEFAULT_POSITION_FIELDS

    lat = lon = None
    if position is not None:
        try:
            lat, lon = (float(x) for x in position.split(","))
        except ValueError:
            raise ValidationError(f"--position {position!r}: LAT,LON in degrees") from None
    pairs = []
    for text in position_fields:
        names = text.split(",")
        if len(names) != 2 or not all(names):
            raise ValidationError(f"position fields {text!r}: LON_FIELD,LAT_FIELD")
        pairs.append((names[0], names[1]))
    unit_map = {}
    for text in units:
        code, eq, unit = text.partition("=")
        if not eq:
            raise ValidationError(f"unit {text!r}: CODE=UNIT, e.g. a21026=ug/m3")
        unit_map[code] = unit
    try:
        deviations = frozenset(Deviation(t) for t in tolerate)
    except ValueError:
        known = ", ".join(d.value for d in Deviation)
        raise ValidationError(f"tolerances are among: {known}") from None
    return Station(
        check_vehicle_id(vehicle_id),
        _kind(kind).value,
        mn,
        pw,
        deviations,
        tuple(pairs) or DEFAULT_POSITION_FIELDS,
        lat,
        lon,
        timezone,
        unit_map,
    )
