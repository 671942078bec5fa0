"""Factor codes → the service's walk-through channels, with explicit units
(docs/domain.md §1.3, §1.6).

The service's channels carry fixed units (µg/m³ for PM, NO2, O3, SO2 and TVOC, mg/m³ for CO;
the walk-through contract in the README). What an analyser sends is in the unit of its
factor's default below unless its registration says otherwise (per code); every value is
converted explicitly, never assumed. Codes without a channel are kept under their own field
names as extra channels, as sent.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry.hj212.packet import Deviation, PacketError

__all__ = [
    "CHANNELS",
    "DEVICE_UNITS",
    "FACTORS_2005",
    "Interval",
    "Realtime",
    "convert",
    "interval_values",
    "realtime_values",
]

#: Factor code → (walk-through channel, the channel's unit).
CHANNELS: dict[str, tuple[str, str]] = {
    "a34004": ("pm25", "ug/m3"),
    "a34002": ("pm10", "ug/m3"),
    "a21004": ("no2", "ug/m3"),
    "a05024": ("o3", "ug/m3"),
    "a21026": ("so2", "ug/m3"),
    "a21005": ("co", "mg/m3"),
    "a99054": ("tvoc", "ug/m3"),
    "a01001": ("temp_c", "degC"),
    "a01002": ("rh_pct", "%"),
    "a01007": ("wind_speed_ms", "m/s"),
    "a01008": ("wind_dir_deg", "deg"),
}

#: The unit an analyser sends a mapped factor in unless its registration names another:
#: Table B.2's unit for the gases (mg/m³), and µg/m³ for particulate matter and O3, which is
#: what devices send (Table B.2 prints ng/m³ for PM; docs/domain.md §1.3, §1.6).
DEVICE_UNITS: dict[str, str] = {
    "a34004": "ug/m3",
    "a34002": "ug/m3",
    "a21004": "mg/m3",
    "a05024": "ug/m3",
    "a21026": "mg/m3",
    "a21005": "mg/m3",
    "a99054": "ug/m3",
    "a01001": "degC",
    "a01002": "%",
    "a01007": "m/s",
    "a01008": "deg",
}

#: HJ/T 212-2005 codes some analysers still send → the 2017 code (a tolerance per analyser;
#: docs/domain.md §1.6, unconfirmed).
FACTORS_2005: dict[str, str] = {
    "02": "a21026",  # SO2
    "03": "a21002",  # NOx
    "04": "a21005",  # CO
}

_MASS = {"ng/m3": 1e-3, "ug/m3": 1.0, "mg/m3": 1e3}
UNITS = frozenset(_MASS) | {"degC", "%", "m/s", "deg"}


def convert(value: float, unit: str, to: str) -> float:
    """``value`` in ``unit`` expressed in ``to``; ``ValueError`` for units that do not
    convert into each other."""
    if unit == to:
        return value
    if unit in _MASS and to in _MASS:
        return value * _MASS[unit] / _MASS[to]
    raise ValueError(f"cannot convert {unit} into {to}")


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PacketError("hj212_field", f"{name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise PacketError("hj212_field", f"{name}={text!r} is not a finite number")
    return value


def _flag(name: str, text: str) -> str:
    if len(text) != 1 or not ("A" <= text <= "Z"):
        raise PacketError("hj212_field", f"{name}={text!r} is not a one-letter data flag")
    return text


def _split(key: str) -> tuple[str, str]:
    code, _, suffix = key.partition("-")
    return code, suffix


def _code(code: str, tolerate: Collection[str], deviations: list[Deviation]) -> str:
    if code in FACTORS_2005 and Deviation.FACTOR_CODES_2005 in tolerate:
        if Deviation.FACTOR_CODES_2005 not in deviations:
            deviations.append(Deviation.FACTOR_CODES_2005)
        return FACTORS_2005[code]
    return code


def _to_channel(code: str, value: float, units: Mapping[str, str]) -> tuple[str, float]:
    channel, unit = CHANNELS[code]
    sent = units.get(code, DEVICE_UNITS[code])
    try:
        return channel, convert(value, sent, unit)
    except ValueError as exc:
        raise PacketError("hj212_field", f"{code}: {exc}") from None


@dataclass(slots=True)
class Realtime:
    """A real-time (CN 2011) data area as one reading: channel values in the channels'
    units, the reading's quality flag, and the rest as extra fields."""

    values: dict[str, float] = field(default_factory=dict)
    flag: str = "N"
    extra: dict[str, Any] = field(default_factory=dict)
    deviations: list[Deviation] = field(default_factory=list)


def realtime_values(
    values: Mapping[str, str],
    *,
    units: Mapping[str, str] = {},
    tolerate: Collection[str] = (),
    skip: Iterable[str] = (),
) -> Realtime:
    """Map a 2011 data area (without ``DataTime`` and the fields in ``skip``). The reading's
    flag is the first data flag of a mapped factor that is not ``N`` (docs/domain.md §1.2);
    a factor sent without a flag counts as ``N``."""
    out = Realtime()
    skipped = {"DataTime", *skip}
    flags: list[str] = []
    for key, text in values.items():
        if key in skipped:
            continue
        code, suffix = _split(key)
        code = _code(code, tolerate, out.deviations)
        if code in CHANNELS and suffix == "Rtd":
            channel, value = _to_channel(code, _number(key, text), units)
            out.values[channel] = value
        elif code in CHANNELS and suffix == "Flag":
            flags.append(_flag(key, text))
        elif suffix in ("Rtd", "Min", "Avg", "Max", "Cou"):
            out.extra[f"{code}-{suffix}"] = _number(key, text)
        else:
            out.extra[f"{code}-{suffix}" if suffix else code] = text
    for f in flags:
        if f != "N":
            out.flag = f
            break
    return out


@dataclass(frozen=True, slots=True)
class Interval:
    """One factor of an interval data area (2051 minute, 2061 hour, 2031 day data)."""

    factor: str
    min: float | None
    avg: float | None
    max: float | None
    cou: float | None
    flag: str | None
    unit: str | None  # None: as sent, the code has no channel


def interval_values(
    values: Mapping[str, str],
    *,
    units: Mapping[str, str] = {},
    tolerate: Collection[str] = (),
    skip: Iterable[str] = (),
) -> tuple[list[Interval], list[Deviation]]:
    """Min/Avg/Max/Cou and flag per factor; mapped factors converted into their channel's
    unit, the rest as sent."""
    skipped = {"DataTime", "BeginTime", "EndTime", *skip}
    per: dict[str, dict[str, Any]] = {}
    deviations: list[Deviation] = []
    for key, text in values.items():
        if key in skipped:
            continue
        code, suffix = _split(key)
        code = _code(code, tolerate, deviations)
        entry = per.setdefault(code, {})
        if suffix in ("Min", "Avg", "Max", "Cou"):
            entry[suffix] = _number(key, text)
        elif suffix == "Flag":
            entry["Flag"] = _flag(key, text)
    out = []
    for code, entry in per.items():
        stats = {s: entry.get(s) for s in ("Min", "Avg", "Max", "Cou")}
        if all(v is None for v in stats.values()):
            continue
        unit = None
        if code in CHANNELS:
            unit = CHANNELS[code][1]
            for s, v in stats.items():
                if v is not None and s != "Cou":
                    stats[s] = _to_channel(code, v, units)[1]
        out.append(
            Interval(
                code,
                stats["Min"],
                stats["Avg"],
                stats["Max"],
                stats["Cou"],
                entry.get("Flag"),
                unit,
            )
        )
    return out, deviations
