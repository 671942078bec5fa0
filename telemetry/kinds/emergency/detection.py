"""Emergency (应急) monitoring: units, tiers, distance from the source and the rapid assessment.

Pure numpy: no I/O, no clock. One element per reading (long form: one substance per element);
no Python loop per reading.

- **Units.** Volume fractions (``ppm``, ``ppb``) and mass concentrations (``mg/m3``,
  ``ug/m3``) are converted into each other only with the substance's molar mass M, at 25 °C
  and 101.325 kPa: mg/m³ = ppm × M / 24.45. Without M nothing is converted (NaN), never
  guessed. ppb → ppm and µg/m³ → mg/m³ are plain scale factors and always done.
- **Tiers.** A substance's tiers (an occupational limit, protective action levels, IDLH, …)
  are ordered by concentration; a reading is assigned the highest tier it exceeds (strictly
  above the limit), compared in the tier's own unit basis (ppm or mg/m³).
- **Geometry.** Great-circle (haversine) distance and initial bearing from the source;
  bearings are degrees clockwise from north in [0, 360).
- **Assessment.** Readings binned by distance ring × direction sector, per substance: the
  maximum, the latest by measurement time, the count and the worst tier; which sectors reach
  each tier, and how far from the source each tier is exceeded.
- **Wind.** The vector mean of the measured wind gives the downwind axis; readings are also
  binned by sector relative to it, upwind readings near the source are the control readings
  HJ 589 asks for, and the receptor tier (an ambient reference value) is reported as the
  readings' share of it (docs/domain.md §4.5, §4.6).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from telemetry import units
from telemetry.alerts.exceedance import Exceedance
from telemetry.columns import FloatArray, IntArray
from telemetry.geo import destination, distance_bearing
from telemetry.kinds.contract import Kind

__all__ = [
    "DEFAULT_RINGS_KM",
    "DEFAULT_SECTORS",
    "DOWNWIND",
    "MASS_UNITS",
    "MOLAR_MASS_G_MOL",
    "MOLAR_VOLUME_L",
    "SEVERITIES",
    "UNITS",
    "UPWIND",
    "VOLUME_UNITS",
    "WIND_SECTORS",
    "Assessment",
    "IncidentMatch",
    "TierTable",
    "Wind",
    "assess",
    "assign_incidents",
    "assign_tiers",
    "convert",
    "incident_exceedances",
    "mean_wind",
    "mgm3_to_ppm",
    "ppm_to_mgm3",
    "ring_edges_m",
    "ring_of",
    "sector_names",
    "sector_of",
    "sector_polygon",
    "wind_sector_bearings",
    "wind_sector_of",
]

BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

#: Litres per mole of an ideal gas at 25 °C and 101.325 kPa (the reference conditions of the
#: ppm ↔ mg/m³ conversion). Many Chinese occupational tools use 24.04 (20 °C) instead.
MOLAR_VOLUME_L = 24.45
#: Scale of each volume unit to ppm and of each mass unit to mg/m³.
VOLUME_UNITS: dict[str, float] = {"ppm": 1.0, "ppb": 1e-3}
MASS_UNITS: dict[str, float] = {"mg/m3": 1.0, "ug/m3": 1e-3}
UNITS: tuple[str, ...] = (*VOLUME_UNITS, *MASS_UNITS)

#: Molar masses (g/mol): the service's one table (telemetry/units.py).
MOLAR_MASS_G_MOL = units.MOLAR_MASS_G_MOL

#: Alert severities from least to most severe (as in :mod:`telemetry.alerts.episodes`).
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

DEFAULT_RINGS_KM: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)
DEFAULT_SECTORS = 16

_COMPASS_16 = (
    [
        "N",
        "NNE",
        "NE",
        "ENE",
        "E",
        "ESE",
        "SE",
        "SSE",
        "S",
        "SSW",
        "SW",
        "WSW",
        "W",
        "WNW",
        "NW",
        "NNW",
    ],
    ["N", "NE", "E", "SE", "S", "SW", "W", "NW"],
    ["N", "E", "S", "W"],
)


# --- units ---------------------------------------------------------------------------------


def _factor(unit: npt.ArrayLike, table: Mapping[str, float]) -> FloatArray:
    units = np.asarray(unit, dtype=object)
    out = np.full(units.shape, np.nan)
    for name, scale in table.items():
        out[units == name] = scale
    return out


def convert(
    value: npt.ArrayLike, unit: npt.ArrayLike, molar_mass_g_mol: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """``(ppm, mg/m³)`` of each value sent in ``unit`` (one of :data:`UNITS`).

    The cross conversion uses ``molar_mass_g_mol`` (NaN: unknown, so that side stays NaN);
    a unit outside :data:`UNITS` gives NaN on both sides.
    """
    value = np.asarray(value, dtype=np.float64)
    molar_mass = np.broadcast_to(np.asarray(molar_mass_g_mol, dtype=np.float64), value.shape)
    volume, mass = _factor(unit, VOLUME_UNITS), _factor(unit, MASS_UNITS)
    ppm_sent, mgm3_sent = value * volume, value * mass
    ppm = np.where(np.isnan(volume), mgm3_sent * MOLAR_VOLUME_L / molar_mass, ppm_sent)
    mgm3 = np.where(np.isnan(mass), ppm_sent * molar_mass / MOLAR_VOLUME_L, mgm3_sent)
    return ppm, mgm3


def ppm_to_mgm3(ppm: npt.ArrayLike, molar_mass_g_mol: npt.ArrayLike) -> FloatArray:
    """mg/m³ = ppm × M / 24.45 (25 °C, 101.325 kPa)."""
    return np.asarray(ppm, dtype=np.float64) * np.asarray(molar_mass_g_mol) / MOLAR_VOLUME_L


def mgm3_to_ppm(mgm3: npt.ArrayLike, molar_mass_g_mol: npt.ArrayLike) -> FloatArray:
    """ppm = mg/m³ × 24.45 / M (25 °C, 101.325 kPa)."""
    return np.asarray(mgm3, dtype=np.float64) * MOLAR_VOLUME_L / np.asarray(molar_mass_g_mol)


# --- geometry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentMatch:
    """Per reading: the position of the incident it belongs to (-1: none) and its distance
    (m) and bearing (degrees) from that incident's source (NaN: none)."""

    incident: npt.NDArray[np.intp]
    distance_m: FloatArray
    bearing_deg: FloatArray


def assign_incidents(
    lat: FloatArray,
    lon: FloatArray,
    ts_us: IntArray,
    *,
    incident_lat: FloatArray,
    incident_lon: FloatArray,
    radius_m: FloatArray,
    start_us: IntArray,
    end_us: IntArray,
) -> IncidentMatch:
    """Which incident each reading belongs to: within its radius (distance ≤ radius) and
    window (start ≤ ts < end; an open incident's end is the int64 maximum). Where incidents
    overlap, the one whose source is nearest wins."""
    n = np.asarray(ts_us).shape[0]
    none = IncidentMatch(np.full(n, -1, dtype=np.intp), np.full(n, np.nan), np.full(n, np.nan))
    if n == 0 or np.asarray(incident_lat).shape[0] == 0:
        return none
    d, b = distance_bearing(
        np.asarray(incident_lat)[:, None], np.asarray(incident_lon)[:, None], lat, lon
    )
    ts = np.asarray(ts_us, dtype=np.int64)
    inside = (
        (d <= np.asarray(radius_m)[:, None])
        & (np.asarray(start_us)[:, None] <= ts)
        & (ts < np.asarray(end_us)[:, None])
    )
    masked = np.where(inside, d, np.inf)
    pick = np.argmin(masked, axis=0)
    cols = np.arange(n)
    found = np.isfinite(masked[pick, cols])
    return IncidentMatch(
        np.where(found, pick, -1).astype(np.intp),
        np.where(found, d[pick, cols], np.nan),
        np.where(found, b[pick, cols], np.nan),
    )


# --- tiers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class TierTable:
    """Rows of table ``emergency_tiers`` as aligned columns, ready for comparison.

    ``basis_ppm`` says in which basis a tier is compared (True: ppm, False: mg/m³) and
    ``limit`` is its limit in that basis. ``rank`` orders the tiers of one substance by
    concentration (the ppm equivalent where the molar mass is known); ``severity`` is the
    row's severity raised, if needed, to that of every lower tier, so that severity never
    falls as the tier rises. ``receptor`` marks the ambient reference values for receptors
    (docs/domain.md §4.5): they are reported by the assessment, never assigned to readings
    as their tier nor alerted, and they raise no other tier's severity.
    """

    id: IntArray
    substance: ObjectArray
    tier: ObjectArray
    limit_value: FloatArray  # as configured, in ``unit``
    unit: ObjectArray
    basis_ppm: BoolArray
    limit: FloatArray
    rank: IntArray
    severity: ObjectArray
    averaging: ObjectArray
    source: ObjectArray
    confirmed: BoolArray
    note: ObjectArray
    receptor: BoolArray

    @classmethod
    def from_rows(
        cls, rows: Iterable[Mapping[str, Any]], molar_mass_g_mol: Mapping[str, float]
    ) -> Self:
        """Build from mappings with the columns of ``emergency_tiers``; a unit outside
        :data:`UNITS` or a severity outside :data:`SEVERITIES` is a ValueError."""
        records = [dict(r) for r in rows]
        for r in records:
            if r["unit"] not in UNITS:
                raise ValueError(f"tier {r.get('id')}: unit {r['unit']!r} is not one of {UNITS}")
            if r["severity"] not in SEVERITIES:
                raise ValueError(f"tier {r.get('id')}: severity {r['severity']!r} is unknown")

        def column(name: str, default: Any = None) -> ObjectArray:
            out = np.empty(len(records), dtype=object)
            out[:] = [r.get(name, default) for r in records]
            return out

        substance, unit = column("substance"), column("unit")
        limit_value = np.array([r["limit_value"] for r in records], dtype=np.float64)
        volume = _factor(unit, VOLUME_UNITS)
        basis_ppm = ~np.isnan(volume)
        limit = np.where(basis_ppm, limit_value * volume, limit_value * _factor(unit, MASS_UNITS))
        molar_mass = np.array([molar_mass_g_mol.get(s, np.nan) for s in substance], dtype=float)
        ppm_equivalent = np.where(basis_ppm, limit, limit * MOLAR_VOLUME_L / molar_mass)
        comparable = np.where(np.isnan(ppm_equivalent), limit, ppm_equivalent)
        tier = column("tier")
        order = np.lexsort((tier.astype(str), comparable, substance.astype(str)))
        rank = np.empty(len(records), dtype=np.int64)
        rank[order] = np.arange(len(records))

        # Severity never falls as the tier rises: a running maximum inside each substance,
        # offset per substance so that it cannot carry over from the previous one.
        severity_no = np.array([SEVERITIES.index(r["severity"]) for r in records], dtype=np.int64)
        receptor = np.array([bool(r.get("receptor", False)) for r in records], dtype=bool)
        sorted_sub = substance[order].astype(str)
        group = np.cumsum(np.r_[False, sorted_sub[1:] != sorted_sub[:-1]]) if len(order) else order
        offset = group * len(SEVERITIES)
        carried = np.where(receptor, 0, severity_no)[order]
        raised = np.maximum.accumulate(carried + offset) - offset
        raised = np.where(receptor[order], severity_no[order], raised)
        severity_sorted = np.array(SEVERITIES, dtype=object)[raised]
        severity = np.empty(len(records), dtype=object)
        severity[order] = severity_sorted
        return cls(
            id=np.array([r["id"] for r in records], dtype=np.int64),
            substance=substance,
            tier=tier,
            limit_value=limit_value,
            unit=unit,
            basis_ppm=basis_ppm,
            limit=limit,
            rank=rank,
            severity=severity,
            averaging=column("averaging"),
            source=column("source"),
            confirmed=np.array([bool(r.get("confirmed", True)) for r in records], dtype=bool),
            note=column("note"),
            receptor=receptor,
        )

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def basis_unit(self, position: int) -> str:
        """The unit ``limit`` and compared values are in: ``ppm`` or ``mg/m3``."""
        return "ppm" if self.basis_ppm[position] else "mg/m3"

    def of(self, substance: str) -> npt.NDArray[np.intp]:
        """Positions of ``substance``'s tiers other than its receptor tier, lowest first."""
        rows = np.flatnonzero((self.substance == substance) & ~self.receptor)
        return rows[np.argsort(self.rank[rows])]

    def receptor_of(self, substance: str) -> int:
        """The position of ``substance``'s receptor tier (the lowest, if several), or -1."""
        rows = np.flatnonzero((self.substance == substance) & self.receptor)
        return int(rows[np.argmin(self.rank[rows])]) if rows.shape[0] else -1


def assign_tiers(
    substance: ObjectArray, value_ppm: FloatArray, value_mgm3: FloatArray, tiers: TierTable
) -> npt.NDArray[np.intp]:
    """Per reading, the position in ``tiers`` of the highest tier it exceeds, or -1.

    A reading exceeds a tier of its substance when its value in the tier's basis is strictly
    above the limit (at the limit is not an exceedance: its multiple would be 0). A value
    that could not be converted into the basis (NaN) exceeds nothing there. Receptor tiers
    are left out.
    """
    substance = np.asarray(substance, dtype=object)
    out = np.full(substance.shape[0], -1, dtype=np.intp)
    if len(tiers) == 0 or substance.shape[0] == 0:
        return out
    for name in np.unique(tiers.substance.astype(str)):  # per substance, not per reading
        readings = np.flatnonzero(substance == name)
        if readings.shape[0] == 0:
            continue
        rows = np.flatnonzero((tiers.substance == name) & ~tiers.receptor)
        if rows.shape[0] == 0:
            continue
        values = np.where(
            tiers.basis_ppm[rows][None, :],
            np.asarray(value_ppm)[readings][:, None],
            np.asarray(value_mgm3)[readings][:, None],
        )
        with np.errstate(invalid="ignore"):
            over = values > tiers.limit[rows][None, :]
        ranked = np.where(over, tiers.rank[rows][None, :], -1)
        pick = np.argmax(ranked, axis=1)
        hit = ranked[np.arange(readings.shape[0]), pick] >= 0
        out[readings[hit]] = rows[pick[hit]]
    return out


def _basis_values(
    tier: npt.NDArray[np.intp], value_ppm: FloatArray, value_mgm3: FloatArray, tiers: TierTable
) -> FloatArray:
    """Each reading's value in the basis of its tier (NaN where it has none)."""
    has = tier >= 0
    ppm_basis = np.zeros(tier.shape[0], dtype=bool)
    ppm_basis[has] = tiers.basis_ppm[tier[has]]
    return np.where(has, np.where(ppm_basis, value_ppm, value_mgm3), np.nan)


def incident_exceedances(
    *,
    vehicle_id: ObjectArray,
    ts_us: IntArray,
    substance: ObjectArray,
    value_ppm: FloatArray,
    value_mgm3: FloatArray,
    incident_id: IntArray,
    distance_m: FloatArray,
    bearing_deg: FloatArray,
    tiers: TierTable,
) -> list[Exceedance]:
    """Exceedances of the readings that belong to an incident (``incident_id`` ≥ 0).

    Each reading counts towards the highest tier it exceeds. One :class:`Exceedance` per
    (incident, tier, vehicle): subject ``incident:{id}``, pollutant the substance, rule
    ``tier:{tier}`` (so every tier is its own episode, and a higher tier opening is the
    escalation), ``value`` and ``peak`` the highest concentration in the tier's basis,
    ``multiple`` = (peak − limit) / limit, details with the peak's distance and bearing
    from the source.
    """
    tier = assign_tiers(substance, value_ppm, value_mgm3, tiers)
    incident_id = np.asarray(incident_id, dtype=np.int64)
    pick = np.flatnonzero((tier >= 0) & (incident_id >= 0))
    if pick.shape[0] == 0:
        return []
    c = _basis_values(tier, value_ppm, value_mgm3, tiers)[pick]
    t, inc, ts = tier[pick], incident_id[pick], np.asarray(ts_us, dtype=np.int64)[pick]
    vehicles = np.asarray(vehicle_id, dtype=object)[pick].astype(str)
    order = np.lexsort((ts, vehicles, t, inc))
    t, inc, ts, vehicles, c = t[order], inc[order], ts[order], vehicles[order], c[order]
    where = pick[order]
    new_group = np.r_[
        True, (inc[1:] != inc[:-1]) | (t[1:] != t[:-1]) | (vehicles[1:] != vehicles[:-1])
    ]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(order)]
    peak = np.maximum.reduceat(c, starts)
    group_of = np.cumsum(new_group) - 1
    # The first reading at the group's peak: its distance and bearing go into the details.
    at_peak = c == peak[group_of]
    first_peak = np.full(len(starts), len(order))
    np.minimum.at(first_peak, group_of[at_peak], np.flatnonzero(at_peak))
    found: list[Exceedance] = []
    for g, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        row = int(t[start])
        limit = float(tiers.limit[row])
        peak_value = float(peak[g])
        source_row = int(where[first_peak[g]])
        found.append(
            Exceedance(
                kind=Kind.EMERGENCY.value,
                subject=f"incident:{int(inc[start])}",
                segment_id=None,
                pollutant=str(tiers.substance[row]),
                rule=f"tier:{tiers.tier[row]}",
                threshold_id=None,
                limit_value=limit,
                unit=tiers.basis_unit(row),
                averaging=tiers.averaging[row],
                source=str(tiers.source[row]),
                severity=str(tiers.severity[row]),
                first_us=int(ts[start]),
                last_us=int(ts[end - 1]),
                value=peak_value,
                peak=peak_value,
                multiple=(peak_value - limit) / limit,
                vehicle_id=str(vehicles[start]),
                readings=end - start,
                details={
                    "incident_id": int(inc[start]),
                    "tier": str(tiers.tier[row]),
                    "tier_id": int(tiers.id[row]),
                    "tier_limit": float(tiers.limit_value[row]),
                    "tier_unit": str(tiers.unit[row]),
                    "confirmed": bool(tiers.confirmed[row]),
                    "tier_note": tiers.note[row],
                    "latest_value": float(c[end - 1]),
                    "distance_m": round(float(distance_m[source_row]), 1),
                    "bearing_deg": round(float(bearing_deg[source_row]), 1),
                },
            )
        )
    return found


# --- wind ----------------------------------------------------------------------------------

#: Sectors relative to the downwind axis, numbered clockwise from it: facing downwind, the
#: right-hand side is clockwise.
WIND_SECTORS: tuple[str, ...] = ("downwind", "crosswind_right", "upwind", "crosswind_left")
DOWNWIND, CROSSWIND_RIGHT, UPWIND, CROSSWIND_LEFT = range(4)


@dataclass(frozen=True, slots=True)
class Wind:
    """The wind over an incident: the vector mean of the readings that measured it within the
    window ending at the latest of them.

    ``from_deg`` is where the mean wind blows from (meteorological convention, clockwise from
    north) and ``downwind_deg`` where it blows to; both NaN when there is no reading or the
    mean is calm. ``steadiness`` is the vector mean's speed over the mean speed (1: one
    direction throughout; near 0: the direction turned round).
    """

    readings: int
    first_us: int
    last_us: int
    speed_ms: float
    mean_speed_ms: float
    from_deg: float
    steadiness: float
    calm: bool

    @property
    def downwind_deg(self) -> float:
        return float((self.from_deg + 180.0) % 360.0)


def mean_wind(
    ts_us: IntArray,
    speed_ms: FloatArray,
    from_deg: FloatArray,
    *,
    window_s: float,
    calm_ms: float,
) -> Wind:
    """The vector mean of the wind readings (one per vehicle and time) within ``window_s``
    of the latest; readings without both speed and direction are left out. A mean speed
    below ``calm_ms`` is calm: no direction."""
    ts = np.asarray(ts_us, dtype=np.int64)
    speed = np.asarray(speed_ms, dtype=np.float64)
    direction = np.asarray(from_deg, dtype=np.float64)
    known = ~np.isnan(speed) & ~np.isnan(direction)
    if not known.any():
        return Wind(0, 0, 0, np.nan, np.nan, np.nan, np.nan, False)
    last = int(ts[known].max())
    inside = known & (ts >= last - int(window_s * 1e6))
    theta = np.radians(direction[inside])
    # The air moves towards from + 180°: east and north components of that motion.
    east = float(np.mean(-speed[inside] * np.sin(theta)))
    north = float(np.mean(-speed[inside] * np.cos(theta)))
    vector_speed = float(np.hypot(east, north))
    mean_speed = float(speed[inside].mean())
    calm = vector_speed < calm_ms
    blows_from = np.nan if calm else float(np.degrees(np.arctan2(-east, -north)) % 360.0)
    return Wind(
        readings=int(inside.sum()),
        first_us=int(ts[inside].min()),
        last_us=last,
        speed_ms=vector_speed,
        mean_speed_ms=mean_speed,
        from_deg=blows_from,
        steadiness=vector_speed / mean_speed if mean_speed > 0 else np.nan,
        calm=calm,
    )


def wind_sector_of(
    bearing_deg: FloatArray,
    downwind_deg: float,
    *,
    downwind_half_deg: float,
    upwind_half_deg: float,
) -> npt.NDArray[np.intp]:
    """The sector of each bearing from the source relative to the downwind axis (see
    :data:`WIND_SECTORS`): downwind within ± ``downwind_half_deg`` of the axis, upwind within
    ± ``upwind_half_deg`` of the opposite bearing, crosswind right or left between; -1 where
    the bearing or the axis is NaN. An edge belongs to the downwind or upwind sector."""
    bearing = np.asarray(bearing_deg, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        relative = (bearing - downwind_deg + 180.0) % 360.0 - 180.0
        off = np.abs(relative)
        sector = np.where(
            off <= downwind_half_deg,
            DOWNWIND,
            np.where(
                off >= 180.0 - upwind_half_deg,
                UPWIND,
                np.where(relative > 0, CROSSWIND_RIGHT, CROSSWIND_LEFT),
            ),
        )
    return np.where(np.isnan(relative), -1, sector).astype(np.intp)


def wind_sector_bearings(
    downwind_deg: float, *, downwind_half_deg: float, upwind_half_deg: float
) -> list[tuple[float, float]]:
    """Per sector of :data:`WIND_SECTORS`, its bearings from the source, clockwise from the
    first to the second."""
    d, dh, uh = downwind_deg, downwind_half_deg, upwind_half_deg
    edges = [(d - dh, d + dh), (d + dh, d + 180 - uh), (d + 180 - uh, d + 180 + uh)]
    edges.append((d + 180 + uh, d + 360 - dh))
    return [(a % 360.0, b % 360.0) for a, b in edges]


# --- rings and sectors ---------------------------------------------------------------------


def ring_edges_m(rings_km: Sequence[float] = DEFAULT_RINGS_KM) -> FloatArray:
    """Ring edges in metres from the outer radii in km: (0.5, 1) → [0, 500, 1000]."""
    outer = np.asarray(rings_km, dtype=np.float64) * 1000.0
    if outer.shape[0] == 0 or not (outer > 0).all() or not (np.diff(outer) > 0).all():
        raise ValueError("rings must be positive and strictly increasing")
    return np.r_[0.0, outer]


def ring_of(distance_m: FloatArray, edges_m: FloatArray) -> npt.NDArray[np.intp]:
    """The ring of each distance: ring i is [edges[i], edges[i+1]), the last ring includes
    its outer edge; -1 beyond the last ring (or NaN)."""
    d = np.asarray(distance_m, dtype=np.float64)
    ring = np.searchsorted(edges_m, d, side="right") - 1
    last = edges_m.shape[0] - 2
    ring = np.where(d == edges_m[-1], last, ring)
    return np.where((ring >= 0) & (ring <= last) & ~np.isnan(d), ring, -1).astype(np.intp)


def sector_of(bearing_deg: FloatArray, sectors: int) -> npt.NDArray[np.intp]:
    """The sector of each bearing; sector 0 is centred on north, numbering goes clockwise,
    and a bearing on an edge belongs to the clockwise sector (so 359° and 0° are both N);
    -1 for NaN."""
    width = 360.0 / sectors
    bearing = np.asarray(bearing_deg, dtype=np.float64)
    known = ~np.isnan(bearing)
    shifted = (np.where(known, bearing, 0.0) + width / 2) % 360.0
    return np.where(known, np.floor(shifted / width).astype(np.intp) % sectors, -1)


def sector_names(sectors: int) -> list[str]:
    """Compass names for 16, 8 or 4 sectors; the sector's centre bearing otherwise."""
    for names in _COMPASS_16:
        if len(names) == sectors:
            return list(names)
    width = 360.0 / sectors
    return [f"{i * width:g}°" for i in range(sectors)]


def sector_polygon(
    lat0: float,
    lon0: float,
    inner_m: float,
    outer_m: float,
    from_deg: float,
    to_deg: float,
    *,
    step_deg: float = 5.0,
) -> list[list[float]]:
    """A closed GeoJSON ring ([lon, lat] pairs) of the area between two radii and two
    bearings (clockwise from ``from_deg`` to ``to_deg``); a wedge when ``inner_m`` is 0."""
    span = (to_deg - from_deg) % 360.0 or 360.0
    steps = max(2, int(np.ceil(span / step_deg)) + 1)
    angles = from_deg + np.linspace(0.0, span, steps)
    lat_out, lon_out = destination(lat0, lon0, angles, outer_m)
    if inner_m > 0:
        lat_in, lon_in = destination(lat0, lon0, angles[::-1], inner_m)
    else:
        lat_in, lon_in = np.array([lat0]), np.array([lon0])
    lats = np.r_[lat_out, lat_in, lat_out[:1]]
    lons = np.r_[lon_out, lon_in, lon_out[:1]]
    return [[round(x, 7), round(y, 7)] for x, y in zip(lons.tolist(), lats.tolist(), strict=True)]


@dataclass(frozen=True, slots=True)
class Assessment:
    """The rapid assessment of an incident's readings.

    Readings are grouped by substance and comparison basis (``unit``: ppm where the value is
    a volume fraction or convertible to one, else mg/m³). ``cell_*`` has one element per
    non-empty (group, ring, sector); ``group_*`` one per group; ``reach_*`` one per (group,
    tier of the group's substance that its readings can be compared with): the sectors (a
    boolean row per tier) and the farthest distance at which readings reach at least that
    tier. Tier columns hold positions in the
    :class:`TierTable` (-1: none); NaN distances mean "not reached".
    """

    edges_m: FloatArray
    sectors: int
    group_substance: ObjectArray
    group_unit: ObjectArray
    group_count: IntArray
    group_max: FloatArray
    group_latest: FloatArray
    group_latest_us: IntArray
    group_tier: npt.NDArray[np.intp]
    group_farthest_m: FloatArray
    group_outside: IntArray  # readings beyond the outermost ring
    cell_group: npt.NDArray[np.intp]
    cell_ring: npt.NDArray[np.intp]
    cell_sector: npt.NDArray[np.intp]
    cell_count: IntArray
    cell_max: FloatArray
    cell_latest: FloatArray
    cell_latest_us: IntArray
    cell_tier: npt.NDArray[np.intp]
    reach_group: npt.NDArray[np.intp]
    reach_tier: npt.NDArray[np.intp]
    reach_sectors: BoolArray  # (reach, sectors)
    reach_farthest_m: FloatArray
    reach_count: IntArray
    # Relative to the downwind axis (empty without one): one element per non-empty (group,
    # sector of WIND_SECTORS).
    wind_group: npt.NDArray[np.intp]
    wind_sector: npt.NDArray[np.intp]
    wind_count: IntArray
    wind_max: FloatArray
    wind_latest: FloatArray
    wind_latest_us: IntArray
    wind_tier: npt.NDArray[np.intp]
    wind_farthest_m: FloatArray
    # Per group: the upwind control readings (upwind sector, within the control distance).
    control_count: IntArray
    control_latest: FloatArray
    control_latest_us: IntArray
    control_median: FloatArray
    control_nearest_m: FloatArray
    # Per group: its substance's receptor tier (-1: none comparable) and the readings' share
    # of it, C/S: the largest, the latest, and how many readings are above it.
    receptor_tier: npt.NDArray[np.intp]
    receptor_max_ratio: FloatArray
    receptor_latest_ratio: FloatArray
    receptor_over: IntArray


def _ranks(tier: npt.NDArray[np.intp], tiers: TierTable) -> IntArray:
    """The rank of each reading's tier (-1 where it has none)."""
    if len(tiers) == 0:
        return np.full(tier.shape[0], -1, dtype=np.int64)
    return np.where(tier >= 0, tiers.rank[np.maximum(tier, 0)], -1)


def _worst(
    tier: npt.NDArray[np.intp], key: npt.NDArray[np.intp], n: int, tiers: TierTable
) -> npt.NDArray[np.intp]:
    """The highest-ranked tier per key (-1 where none)."""
    rank = _ranks(tier, tiers)
    best_rank = np.full(n, -1, dtype=np.int64)
    np.maximum.at(best_rank, key, rank)
    position = np.full(n, -1, dtype=np.intp)
    if len(tiers):
        by_rank = np.empty(len(tiers), dtype=np.intp)
        by_rank[tiers.rank] = np.arange(len(tiers))
        has = best_rank >= 0
        position[has] = by_rank[best_rank[has]]
    return position


def _latest(
    key: npt.NDArray[np.intp], ts_us: IntArray, value: FloatArray, n: int
) -> tuple[FloatArray, IntArray]:
    """Per key, the value and time of the latest reading (the last one sent at that time)."""
    order = np.lexsort((np.arange(key.shape[0]), ts_us, key))
    k = key[order]
    last = np.r_[k[1:] != k[:-1], True] if k.shape[0] else np.zeros(0, dtype=bool)
    latest = np.full(n, np.nan)
    latest_us = np.zeros(n, dtype=np.int64)
    latest[k[last]] = value[order][last]
    latest_us[k[last]] = ts_us[order][last]
    return latest, latest_us


def assess(
    *,
    substance: ObjectArray,
    value_ppm: FloatArray,
    value_mgm3: FloatArray,
    ts_us: IntArray,
    distance_m: FloatArray,
    bearing_deg: FloatArray,
    tiers: TierTable,
    rings_km: Sequence[float] = DEFAULT_RINGS_KM,
    sectors: int = DEFAULT_SECTORS,
    downwind_deg: float = np.nan,
    downwind_half_deg: float = 45.0,
    upwind_half_deg: float = 45.0,
    control_max_m: float = np.inf,
) -> Assessment:
    """Bin readings by ring × sector per substance; see :class:`Assessment`.

    Readings without a value in either basis are left out. With a downwind axis
    (``downwind_deg``, see :func:`wind_sector_of`), readings are also summed up by sector
    relative to it, and those upwind within ``control_max_m`` of the source are the control
    readings (HJ 589's upwind control point, docs/domain.md §4.6).
    """
    if sectors < 1:
        raise ValueError("sectors must be at least 1")
    edges = ring_edges_m(rings_km)
    substance = np.asarray(substance, dtype=object)
    value_ppm = np.asarray(value_ppm, dtype=np.float64)
    value_mgm3 = np.asarray(value_mgm3, dtype=np.float64)
    ts_us = np.asarray(ts_us, dtype=np.int64)
    distance_m = np.asarray(distance_m, dtype=np.float64)
    in_ppm = ~np.isnan(value_ppm)
    usable = in_ppm | ~np.isnan(value_mgm3)
    value = np.where(in_ppm, value_ppm, value_mgm3)[usable]
    unit = np.where(in_ppm, "ppm", "mg/m3")[usable]
    sub = substance[usable].astype(str)
    ts, dist = ts_us[usable], distance_m[usable]
    tier = assign_tiers(sub.astype(object), value_ppm[usable], value_mgm3[usable], tiers)

    pairs = np.char.add(np.char.add(sub, "\x1f"), unit) if sub.shape[0] else sub
    keys, group = np.unique(pairs, return_inverse=True)
    group = group.reshape(-1).astype(np.intp)
    n_groups = keys.shape[0]
    split = [str(k).split("\x1f") for k in keys]  # per group, not per reading
    group_substance = np.array([s for s, _ in split], dtype=object)
    group_unit = np.array([u for _, u in split], dtype=object)

    group_count = np.bincount(group, minlength=n_groups).astype(np.int64)
    group_max = np.full(n_groups, -np.inf)
    np.maximum.at(group_max, group, value)
    group_latest, group_latest_us = _latest(group, ts, value, n_groups)
    group_tier = _worst(tier, group, n_groups, tiers)
    exceeding = tier >= 0
    group_farthest = np.full(n_groups, -np.inf)
    np.maximum.at(group_farthest, group[exceeding], dist[exceeding])

    ring = ring_of(dist, edges)
    sector = sector_of(np.asarray(bearing_deg, dtype=np.float64)[usable], sectors)
    inside = ring >= 0
    group_outside = np.bincount(group[~inside], minlength=n_groups).astype(np.int64)
    n_rings = edges.shape[0] - 1
    cell_key = (group * n_rings + ring) * sectors + sector
    cells, cell_index = np.unique(cell_key[inside], return_inverse=True)
    cell_index = cell_index.reshape(-1).astype(np.intp)
    n_cells = cells.shape[0]
    cell_max = np.full(n_cells, -np.inf)
    np.maximum.at(cell_max, cell_index, value[inside])
    cell_latest, cell_latest_us = _latest(cell_index, ts[inside], value[inside], n_cells)

    # Reach: per (group, tier of its substance), the sectors and the farthest distance at
    # which readings reach at least that tier. Loops over groups and tiers, not readings.
    reading_rank = _ranks(tier, tiers)
    r_group, r_tier, r_sectors, r_far, r_count = [], [], [], [], []
    ppm_known, mgm3_known = ~np.isnan(value_ppm[usable]), ~np.isnan(value_mgm3[usable])
    for g in range(n_groups):
        members = group == g
        comparable = (bool(ppm_known[members].any()), bool(mgm3_known[members].any()))
        for row in tiers.of(str(group_substance[g])).tolist():
            if not comparable[0 if tiers.basis_ppm[row] else 1]:
                continue  # e.g. a mass limit for readings in ppm of a substance without M
            reach = members & (reading_rank >= tiers.rank[row]) & (sector >= 0)
            row_sectors = np.zeros(sectors, dtype=bool)
            row_sectors[sector[reach]] = True
            r_group.append(g)
            r_tier.append(row)
            r_sectors.append(row_sectors)
            r_far.append(float(dist[reach].max()) if reach.any() else -np.inf)
            r_count.append(int(reach.sum()))

    def nan_if_empty(a: FloatArray) -> FloatArray:
        return np.where(np.isneginf(a), np.nan, a)

    # Relative to the wind: cells per (group, wind sector), then the control readings.
    wind = wind_sector_of(
        np.asarray(bearing_deg, dtype=np.float64)[usable],
        downwind_deg,
        downwind_half_deg=downwind_half_deg,
        upwind_half_deg=upwind_half_deg,
    )
    placed = wind >= 0
    wind_keys, wind_index = np.unique(group[placed] * len(WIND_SECTORS) + wind[placed],
                                      return_inverse=True)  # fmt: skip
    wind_index = wind_index.reshape(-1).astype(np.intp)
    n_wind = wind_keys.shape[0]
    wind_max = np.full(n_wind, -np.inf)
    np.maximum.at(wind_max, wind_index, value[placed])
    wind_latest, wind_latest_us = _latest(wind_index, ts[placed], value[placed], n_wind)
    wind_far = np.full(n_wind, -np.inf)
    np.maximum.at(wind_far, wind_index, dist[placed])

    control = (wind == UPWIND) & (dist <= control_max_m)
    control_count = np.bincount(group[control], minlength=n_groups).astype(np.int64)
    control_latest, control_latest_us = _latest(group[control], ts[control], value[control],
                                                n_groups)  # fmt: skip
    control_nearest = np.full(n_groups, np.inf)
    np.minimum.at(control_nearest, group[control], dist[control])
    control_median = np.full(n_groups, np.nan)

    receptor_tier = np.full(n_groups, -1, dtype=np.intp)
    receptor_max = np.full(n_groups, np.nan)
    receptor_latest = np.full(n_groups, np.nan)
    receptor_over = np.zeros(n_groups, dtype=np.int64)
    basis_ppm_values, basis_mgm3_values = value_ppm[usable], value_mgm3[usable]
    for g in range(n_groups):  # per group, not per reading
        members = group == g
        if control_count[g]:
            control_median[g] = float(np.median(value[members & control]))
        row = tiers.receptor_of(str(group_substance[g]))
        if row < 0:
            continue
        basis = basis_ppm_values if tiers.basis_ppm[row] else basis_mgm3_values
        ratio = basis[members] / tiers.limit[row]
        if np.isnan(ratio).all():
            continue  # e.g. a mass reference for readings in ppm without a molar mass
        receptor_tier[g] = row
        receptor_max[g] = float(np.nanmax(ratio))
        order = np.lexsort((np.arange(ratio.shape[0]), ts[members]))
        receptor_latest[g] = float(ratio[order][-1])
        receptor_over[g] = int((ratio > 1.0).sum())

    return Assessment(
        edges_m=edges,
        sectors=sectors,
        group_substance=group_substance,
        group_unit=group_unit,
        group_count=group_count,
        group_max=nan_if_empty(group_max),
        group_latest=group_latest,
        group_latest_us=group_latest_us,
        group_tier=group_tier,
        group_farthest_m=nan_if_empty(group_farthest),
        group_outside=group_outside,
        cell_group=(cells // (n_rings * sectors)).astype(np.intp),
        cell_ring=((cells // sectors) % n_rings).astype(np.intp),
        cell_sector=(cells % sectors).astype(np.intp),
        cell_count=np.bincount(cell_index, minlength=n_cells).astype(np.int64),
        cell_max=nan_if_empty(cell_max),
        cell_latest=cell_latest,
        cell_latest_us=cell_latest_us,
        cell_tier=_worst(tier[inside], cell_index, n_cells, tiers),
        reach_group=np.array(r_group, dtype=np.intp),
        reach_tier=np.array(r_tier, dtype=np.intp),
        reach_sectors=np.array(r_sectors, dtype=bool).reshape(len(r_group), sectors),
        reach_farthest_m=nan_if_empty(np.array(r_far, dtype=np.float64)),
        reach_count=np.array(r_count, dtype=np.int64),
        wind_group=(wind_keys // len(WIND_SECTORS)).astype(np.intp),
        wind_sector=(wind_keys % len(WIND_SECTORS)).astype(np.intp),
        wind_count=np.bincount(wind_index, minlength=n_wind).astype(np.int64),
        wind_max=nan_if_empty(wind_max),
        wind_latest=wind_latest,
        wind_latest_us=wind_latest_us,
        wind_tier=_worst(tier[placed], wind_index, n_wind, tiers),
        wind_farthest_m=nan_if_empty(wind_far),
        control_count=control_count,
        control_latest=control_latest,
        control_latest_us=control_latest_us,
        control_median=control_median,
        control_nearest_m=np.where(np.isinf(control_nearest), np.nan, control_nearest),
        receptor_tier=receptor_tier,
        receptor_max_ratio=receptor_max,
        receptor_latest_ratio=receptor_latest,
        receptor_over=receptor_over,
    )
