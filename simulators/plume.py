"""Point sources of pollution and the Gaussian plume they add around themselves.

A source adds ``peak × exp(−d² / (2σ²))`` of its pollutant at distance ``d`` metres. With the
default σ = 40 m a street passing the source reads near the peak over roughly 100 m of its
length and falls back to background within about 150 m.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulators.network import FloatArray, RoadNetwork
from telemetry.errors import ValidationError
from telemetry.kinds.walkthrough.record import POLLUTANTS

__all__ = ["Plumes", "Source", "default_sources", "parse_source"]

DEFAULT_SIGMA_M = 40.0


@dataclass(frozen=True, slots=True)
class Source:
    """A point source: where it is, what it emits and how much it adds at its centre."""

    lon: float
    lat: float
    pollutant: str
    peak: float  # in the pollutant's contract unit (µg/m³, mg/m³ for CO)
    sigma_m: float = DEFAULT_SIGMA_M


def parse_source(text: str) -> Source:
    """Parse ``"lon,lat,pollutant,peak"`` (the ``--source`` option)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValidationError(f"source {text!r} is not 'lon,lat,pollutant,peak'")
    lon_text, lat_text, pollutant, peak_text = parts
    try:
        lon, lat, peak = float(lon_text), float(lat_text), float(peak_text)
    except ValueError as exc:
        raise ValidationError(f"source {text!r}: lon, lat and peak must be numbers") from exc
    if pollutant not in POLLUTANTS:
        raise ValidationError(f"source {text!r}: pollutant must be one of {', '.join(POLLUTANTS)}")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValidationError(f"source {text!r}: coordinates out of range")
    if peak <= 0:
        raise ValidationError(f"source {text!r}: peak must be positive")
    return Source(lon, lat, pollutant, peak)


def default_sources(network: RoadNetwork) -> list[Source]:
    """Two sources on the network's streets: a construction-dust source (PM2.5 and PM10) halfway
    along the longest street, and a traffic NO2/CO source halfway along the street whose midpoint
    lies farthest from the first."""
    streets = range(len(network.street_names))
    dusty = max(streets, key=network.street_length_m)
    dust_lon, dust_lat = network.street_midpoint(dusty)
    dx, dy = network.to_xy(np.array([dust_lon]), np.array([dust_lat]))

    def distance_from_dust(street: int) -> float:
        lon, lat = network.street_midpoint(street)
        x, y = network.to_xy(np.array([lon]), np.array([lat]))
        return float(np.hypot(x - dx, y - dy)[0])

    busy = max((s for s in streets if s != dusty), key=distance_from_dust, default=dusty)
    traffic_lon, traffic_lat = network.street_midpoint(busy)
    return [
        Source(dust_lon, dust_lat, "pm25", 120.0),
        Source(dust_lon, dust_lat, "pm10", 220.0),
        Source(traffic_lon, traffic_lat, "no2", 300.0),
        Source(traffic_lon, traffic_lat, "co", 3.0),
    ]


class Plumes:
    """The sources projected into a network's local metres, ready to evaluate at many points."""

    def __init__(self, sources: Sequence[Source], network: RoadNetwork) -> None:
        self.sources = tuple(sources)
        self._by_pollutant: dict[str, tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = {}
        for pollutant in POLLUTANTS:
            mine = [s for s in self.sources if s.pollutant == pollutant]
            if not mine:
                continue
            x, y = network.to_xy(np.array([s.lon for s in mine]), np.array([s.lat for s in mine]))
            peak = np.array([s.peak for s in mine])
            sigma = np.array([s.sigma_m for s in mine])
            self._by_pollutant[pollutant] = (x, y, peak, sigma)

    def added(self, pollutant: str, x: FloatArray, y: FloatArray) -> FloatArray:
        """Concentration the sources add at each point (x, y metres); zeros if none emit it."""
        entry = self._by_pollutant.get(pollutant)
        if entry is None:
            return np.zeros(np.shape(x))
        sx, sy, peak, sigma = entry
        d2 = (np.asarray(x)[:, None] - sx) ** 2 + (np.asarray(y)[:, None] - sy) ** 2
        added: FloatArray = (peak * np.exp(-d2 / (2.0 * sigma**2))).sum(axis=1)
        return added
