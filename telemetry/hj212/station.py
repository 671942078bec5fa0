"""What the service knows of a registered HJ 212 analyser: the vehicle its MN belongs to,
its password, its tolerances, where its position comes from, its time zone and units
(docs/adr/0010-hj212.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry.hj212.factors import CHANNELS, UNITS
from telemetry.hj212.packet import Deviation, PacketError, time_zone

__all__ = ["DEFAULT_POSITION_FIELDS", "Position", "Station", "position_of"]

#: (longitude, latitude) field names vendors use in the CP area, tried in order; HJ 212 has
#: no position fields (docs/domain.md §1.1, §1.6). A name also matches with ``-Rtd``.
DEFAULT_POSITION_FIELDS: tuple[tuple[str, str], ...] = (
    ("Longitude", "Latitude"),
    ("Lng", "Lat"),
    ("Lon", "Lat"),
    ("lng", "lat"),
    ("lon", "lat"),
)


@dataclass(frozen=True, slots=True)
class Station:
    """A registered analyser (one MN) and how to read it."""

    vehicle_id: str
    kind: str
    mn: str
    pw: str | None = None  # None: the PW is not checked
    tolerate: frozenset[Deviation] = frozenset()
    position_fields: tuple[tuple[str, str], ...] = DEFAULT_POSITION_FIELDS
    lat: float | None = None  # a fixed site's registered position
    lon: float | None = None
    timezone: str | None = None  # None: China Standard Time
    units: Mapping[str, str] = field(default_factory=dict)  # factor code → unit sent

    def options(self) -> dict[str, Any]:
        """The settings stored as JSON beside the registration."""
        out: dict[str, Any] = {}
        if self.tolerate:
            out["tolerate"] = sorted(self.tolerate)
        if self.position_fields != DEFAULT_POSITION_FIELDS:
            out["position_fields"] = [list(p) for p in self.position_fields]
        if self.timezone:
            out["timezone"] = self.timezone
        if self.units:
            out["units"] = dict(self.units)
        return out

    @classmethod
    def from_options(
        cls,
        vehicle_id: str,
        kind: str,
        mn: str,
        pw: str | None,
        lat: float | None,
        lon: float | None,
        options: Mapping[str, Any],
    ) -> Station:
        fields = options.get("position_fields")
        return cls(
            vehicle_id,
            kind,
            mn,
            pw,
            frozenset(Deviation(d) for d in options.get("tolerate", ())),
            tuple((a, b) for a, b in fields) if fields else DEFAULT_POSITION_FIELDS,
            lat,
            lon,
            options.get("timezone"),
            dict(options.get("units", {})),
        )

    def check(self) -> Station:
        """This station if its settings are usable, else ``ValueError`` saying why."""
        time_zone(self.timezone)
        for code, unit in self.units.items():
            if unit not in UNITS:
                raise ValueError(f"unit {unit!r} of {code}: one of {', '.join(sorted(UNITS))}")
            fixed = code in CHANNELS and CHANNELS[code][1] in ("degC", "%", "m/s", "deg")
            if fixed and unit != CHANNELS[code][1]:
                raise ValueError(f"{code} is sent in {CHANNELS[code][1]} only")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("a fixed position needs both latitude and longitude")
        if self.lat is not None and not (-90 <= self.lat <= 90 and -180 <= (self.lon or 0) <= 180):
            raise ValueError("position out of range")
        return self


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    fields: tuple[str, ...]  # the CP fields it came from (none: the registered position)


def _find(values: Mapping[str, str], name: str) -> str | None:
    if name in values:
        return name
    if f"{name}-Rtd" in values:
        return f"{name}-Rtd"
    return None


def position_of(values: Mapping[str, str], station: Station) -> Position | None:
    """The reading's position: the first pair of the station's position fields the data area
    holds, else the station's registered position, else None."""
    for lon_name, lat_name in station.position_fields:
        lon_key, lat_key = _find(values, lon_name), _find(values, lat_name)
        if lon_key is None or lat_key is None:
            continue
        try:
            lon, lat = float(values[lon_key]), float(values[lat_key])
        except ValueError:
            raise PacketError(
                "hj212_field",
                f"position {lon_key}={values[lon_key]!r}, {lat_key}="
                f"{values[lat_key]!r} is not a number pair",
            ) from None
        return Position(lat, lon, (lon_key, lat_key))
    if station.lat is not None and station.lon is not None:
        return Position(station.lat, station.lon, ())
    return None
