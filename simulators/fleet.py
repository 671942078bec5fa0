"""A seedable fleet of walk-through (走航) monitoring vehicles driving a street network.

Pure: no I/O and no clock. The caller passes the time of every tick, so the same seed and the
same ticks give the same readings, and tests need no sleeping. All vehicles advance together
with numpy; only the vehicles that reach a node in a tick pick their next street in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from simulators.network import FloatArray, RoadNetwork
from simulators.plume import Plumes
from telemetry.kinds.walkthrough.record import POLLUTANTS, WEATHER

__all__ = ["BACKGROUND", "Fleet", "Reading", "Tick", "rfc3339", "tick_readings"]

Reading = dict[str, Any]

#: Typical urban background levels (µg/m³; CO in mg/m³) the sensors read away from sources.
BACKGROUND: dict[str, float] = {
    "pm25": 35.0,
    "pm10": 60.0,
    "no2": 40.0,
    "o3": 80.0,
    "so2": 8.0,
    "co": 0.6,
    "tvoc": 150.0,
}
_DECIMALS = {"co": 3, "temp_c": 1, "rh_pct": 1, "wind_speed_ms": 1, "wind_dir_deg": 0}

_CRUISE_MEAN_KMH, _CRUISE_MIN_KMH, _CRUISE_MAX_KMH = 30.0, 20.0, 40.0
_TURN_SPEED_KMH = 12.0  # through a right-angle turn
_ACCEL_MS2, _DECEL_MS2 = 1.0, 2.0
_GPS_NOISE_M = 3.0
_SENSOR_NOISE = 0.08  # relative, per reading
_CALIBRATION_PER_S = 1.0 / 1800.0  # chance a vehicle starts a zero/span check in a given second
_CALIBRATION_S = 30.0


@dataclass(frozen=True, slots=True)
class Tick:
    """Every vehicle's reading for one instant, column-wise (rounded as sent)."""

    ts_s: float
    columns: dict[str, npt.NDArray[Any]]  # lat, lon, speed_kmh, heading_deg, pollutants, weather
    flag: npt.NDArray[np.str_]


def rfc3339(ts_s: float) -> str:
    """Epoch seconds as RFC 3339 with a UTC offset and millisecond precision."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds")


class Fleet:
    """N vehicles on ``network``, reading background levels plus ``plumes``, at each tick."""

    def __init__(
        self,
        network: RoadNetwork,
        plumes: Plumes,
        *,
        vehicles: int = 5,
        seed: int = 1,
        prefix: str = "walk-",
        gap_every_s: float | None = None,
        gap_length_s: float = 0.0,
        max_readings_per_message: int = 3600,
    ) -> None:
        if vehicles < 1:
            raise ValueError("a fleet needs at least one vehicle")
        if gap_every_s is not None and not 0 < gap_length_s < gap_every_s:
            raise ValueError("a coverage gap must be shorter than the interval between gaps")
        self.network = network
        self.plumes = plumes
        self.vehicle_ids = tuple(f"{prefix}{i + 1:03d}" for i in range(vehicles))
        self.gap_every_s = gap_every_s
        self.gap_length_s = gap_length_s
        self.max_readings_per_message = max_readings_per_message

        routes, motion, sensors, gaps = np.random.SeedSequence(seed).spawn(4)
        self._routes = np.random.default_rng(routes)
        self._motion = np.random.default_rng(motion)
        self._sensors = np.random.default_rng(sensors)

        n = vehicles
        weights = network.edge_length_m / network.edge_length_m.sum()
        self._edge = self._motion.choice(network.edge_count, size=n, p=weights).astype(np.int64)
        self._offset_m = self._motion.uniform(0.0, 1.0, n) * network.edge_length_m[self._edge]
        # The first vehicles start at the beginning of the road leading to each source, so a
        # demo shows its hotspots within the first minute instead of whenever chance has it.
        for i, edge in enumerate(self._edges_to_sources()[:n]):
            self._edge[i], self._offset_m[i] = edge, 0.0
        self._next = np.array(
            [network.next_edge(int(e), self._routes) for e in self._edge], dtype=np.int64
        )
        self._cruise_kmh = self._motion.uniform(25.0, 35.0, n)
        self._speed_kmh = self._cruise_kmh.copy()
        self._xy = self._position()
        self._heading_deg = network.edge_heading_deg[self._edge].copy()
        self._gain = self._sensors.normal(1.0, 0.04, (n, len(POLLUTANTS)))
        self._city = np.zeros(len(POLLUTANTS))  # slow city-wide log-variation of the background
        self._weather = np.array([24.0, 60.0, 2.5, 135.0])
        self._calibrating_until = np.full(n, -math.inf)
        self._gap_phase_s = np.random.default_rng(gaps).uniform(0.0, gap_every_s or 1.0, n)
        self._start_s: float | None = None
        self._last_s: float | None = None
        self._buffers: list[list[Reading]] = [[] for _ in range(n)]

    # -- motion ---------------------------------------------------------------------------------

    def _edges_to_sources(self) -> list[int]:
        """For each distinct source location, the road edge whose midpoint is nearest to it."""
        net = self.network
        mid = (net.node_xy[net.edge_from] + net.node_xy[net.edge_to]) / 2.0
        places = sorted({(src.lon, src.lat) for src in self.plumes.sources})
        edges = []
        for lon, lat in places:
            x, y = net.to_xy(np.array([lon]), np.array([lat]))
            edges.append(int(np.argmin(np.hypot(mid[:, 0] - x[0], mid[:, 1] - y[0]))))
        return edges

    def _position(self) -> FloatArray:
        net = self.network
        a = net.node_xy[net.edge_from[self._edge]]
        b = net.node_xy[net.edge_to[self._edge]]
        share = (self._offset_m / net.edge_length_m[self._edge])[:, None]
        position: FloatArray = a + (b - a) * share
        return position

    def _drive(self, dt_s: float) -> None:
        net, n = self.network, len(self.vehicle_ids)
        theta, sigma = 0.05, 2.0
        self._cruise_kmh += theta * (_CRUISE_MEAN_KMH - self._cruise_kmh) * dt_s
        self._cruise_kmh += sigma * math.sqrt(dt_s) * self._motion.standard_normal(n)
        np.clip(self._cruise_kmh, _CRUISE_MIN_KMH, _CRUISE_MAX_KMH, out=self._cruise_kmh)

        turn = (net.edge_heading_deg[self._next] - net.edge_heading_deg[self._edge] + 180.0) % 360.0
        sharpness = np.clip(np.abs(turn - 180.0) / 90.0, 0.0, 1.0)
        turn_ms = (_CRUISE_MAX_KMH - (_CRUISE_MAX_KMH - _TURN_SPEED_KMH) * sharpness) / 3.6
        to_node_m = net.edge_length_m[self._edge] - self._offset_m
        allowed_kmh = np.sqrt(turn_ms**2 + 2.0 * _DECEL_MS2 * to_node_m) * 3.6
        target = np.minimum(self._cruise_kmh, allowed_kmh)
        change = np.clip(
            target - self._speed_kmh, -_DECEL_MS2 * 3.6 * dt_s, _ACCEL_MS2 * 3.6 * dt_s
        )
        before = self._speed_kmh.copy()
        self._speed_kmh += change
        self._offset_m += (before + self._speed_kmh) / 2.0 / 3.6 * dt_s

        for v in np.flatnonzero(self._offset_m >= net.edge_length_m[self._edge]).tolist():
            while self._offset_m[v] >= net.edge_length_m[self._edge[v]]:
                self._offset_m[v] -= net.edge_length_m[self._edge[v]]
                self._edge[v] = self._next[v]
                self._next[v] = net.next_edge(int(self._edge[v]), self._routes)

        xy = self._position()
        moved = xy - self._xy
        heading = np.degrees(np.arctan2(moved[:, 0], moved[:, 1])) % 360.0
        still = np.hypot(moved[:, 0], moved[:, 1]) < 0.1
        self._heading_deg = np.where(still, self._heading_deg, heading)
        self._xy = xy

    # -- sensors --------------------------------------------------------------------------------

    def _sense(
        self, now_s: float, dt_s: float
    ) -> tuple[dict[str, FloatArray], npt.NDArray[np.bool_]]:
        n = len(self.vehicle_ids)
        rng = self._sensors
        self._city += -0.01 * self._city * dt_s + 0.02 * math.sqrt(dt_s) * rng.standard_normal(
            len(POLLUTANTS)
        )
        x, y = self._xy[:, 0], self._xy[:, 1]
        noise = rng.lognormal(0.0, _SENSOR_NOISE, (n, len(POLLUTANTS)))
        values: dict[str, FloatArray] = {}
        for i, pollutant in enumerate(POLLUTANTS):
            level = BACKGROUND[pollutant] * math.exp(self._city[i]) + self.plumes.added(
                pollutant, x, y
            )
            values[pollutant] = level * self._gain[:, i] * noise[:, i]

        drift = np.array([0.002, 0.01, 0.02, 0.5]) * math.sqrt(dt_s)
        self._weather += drift * rng.standard_normal(4)
        self._weather[2] = max(self._weather[2], 0.0)
        spread = np.array([0.2, 1.0, 0.4, 8.0])
        weather = self._weather + spread * rng.standard_normal((n, 4))
        values["temp_c"] = weather[:, 0]
        values["rh_pct"] = np.clip(weather[:, 1], 0.0, 100.0)
        values["wind_speed_ms"] = np.maximum(weather[:, 2], 0.0)
        values["wind_dir_deg"] = weather[:, 3] % 360.0

        starts = rng.random(n) < _CALIBRATION_PER_S * dt_s
        idle = self._calibrating_until <= now_s
        self._calibrating_until = np.where(
            starts & idle, now_s + _CALIBRATION_S, self._calibrating_until
        )
        return values, self._calibrating_until > now_s

    # -- ticks ----------------------------------------------------------------------------------

    def step(self, now_s: float) -> Tick:
        """Advance every vehicle to ``now_s`` (epoch seconds) and read its instruments."""
        dt_s = 1.0 if self._last_s is None else min(max(now_s - self._last_s, 0.0), 10.0)
        if self._start_s is None:
            self._start_s = now_s
        self._last_s = now_s
        self._drive(dt_s)
        values, calibrating = self._sense(now_s, dt_s)

        n = len(self.vehicle_ids)
        gps = self._xy + self._sensors.normal(0.0, _GPS_NOISE_M, (n, 2))
        lon, lat = self.network.to_lonlat(gps[:, 0], gps[:, 1])
        columns: dict[str, npt.NDArray[Any]] = {
            "lat": np.round(lat, 6),
            "lon": np.round(lon, 6),
            "speed_kmh": np.round(self._speed_kmh, 1),
            "heading_deg": np.round(self._heading_deg, 1),
        }
        for name in (*POLLUTANTS, *WEATHER):
            columns[name] = np.round(values[name], _DECIMALS.get(name, 1))
        flag = np.where(calibrating, "C", "N").astype("<U1")
        return Tick(now_s, columns, flag)

    def in_gap(self, now_s: float) -> npt.NDArray[np.bool_]:
        """Which vehicles are out of network coverage at ``now_s``."""
        n = len(self.vehicle_ids)
        if self.gap_every_s is None or self._start_s is None:
            return np.zeros(n, dtype=bool)
        elapsed = now_s - self._start_s + self._gap_phase_s
        return (elapsed % self.gap_every_s) >= self.gap_every_s - self.gap_length_s

    def advance(self, now: datetime) -> list[tuple[str, Reading | list[Reading]]]:
        """One tick at ``now`` (timezone-aware): what each vehicle in coverage sends.

        A vehicle in coverage sends its reading; a vehicle in a gap buffers it and sends
        nothing; the first tick back in coverage sends the buffered readings followed by the
        current one as a list (in chunks of at most ``max_readings_per_message``).
        """
        now_s = now.timestamp()
        tick = self.step(now_s)
        gap = self.in_gap(now_s)
        ts = rfc3339(now_s)
        readings = tick_readings(tick, ts)
        out: list[tuple[str, Reading | list[Reading]]] = []
        for v, reading in enumerate(readings):
            buffer = self._buffers[v]
            if gap[v]:
                buffer.append(reading)
                continue
            vehicle_id = self.vehicle_ids[v]
            if not buffer:
                out.append((vehicle_id, reading))
                continue
            buffer.append(reading)
            size = self.max_readings_per_message
            out.extend((vehicle_id, buffer[i : i + size]) for i in range(0, len(buffer), size))
            self._buffers[v] = []
        return out


def tick_readings(tick: Tick, ts: str | int) -> list[Reading]:
    """The tick as one contract reading dict per vehicle, all stamped ``ts``."""
    names = list(tick.columns)
    rows = zip(*(tick.columns[name].tolist() for name in names), strict=True)
    flags: Sequence[str] = tick.flag.tolist()
    return [
        {"ts": ts, **dict(zip(names, row, strict=True)), "flag": flag}
        for row, flag in zip(rows, flags, strict=True)
    ]
