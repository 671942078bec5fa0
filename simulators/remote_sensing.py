"""A remote-sensing vehicle (移动遥感监测车) parked at a roadside site, measuring passing traffic.

:class:`RoadsideSite` is pure: it takes the time of every tick and a seed, so the same seed and
ticks give the same passes. Traffic arrives as a Poisson stream with a realistic mix (passenger
gasoline cars, light and heavy diesel, natural-gas buses, electric cars without a plume); a
small share of passes comes from a fixed pool of high-emitting plates that recur, so the
high-emitter rule fires. Conditions vary so that some passes are invalid (gusts, hard braking).
:func:`run` publishes the passes over MQTT, one message per pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from simulators.accounts import vehicle_publisher
from simulators.network import load_network
from simulators.publisher import topic_for
from telemetry.errors import TelemetryError
from telemetry.kinds.contract import Kind
from telemetry.settings import Settings

__all__ = ["CLASSES", "RoadsideSite", "VehicleClass", "add_arguments", "run"]

log = logging.getLogger(__name__)

DEFAULT_ROADS = Path(__file__).resolve().parent.parent / "data" / "roads" / "demo.geojson"
_encoder = msgspec.json.Encoder()
_LETTERS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))
_ALNUM = np.array(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"))


@dataclass(frozen=True, slots=True)
class VehicleClass:
    """A share of the traffic and the median exhaust of its normal vehicles (units as in the
    MQTT contract; NaN: the instrument reports nothing for this class)."""

    name: str
    share: float
    fuel_type: str
    plate_color: int  # vendor scheme: 0 blue, 1 yellow, 4 green
    speed_kmh: float
    co_pct: float
    hc_ppm: float
    no_ppm: float
    opacity_pct: float
    ringelmann: float


NAN = float("nan")
#: An urban arterial's mix; medians are typical of in-use Chinese fleets (illustrative).
CLASSES: tuple[VehicleClass, ...] = (
    VehicleClass("passenger_gasoline", 0.70, "gasoline", 0, 45.0, 0.15, 60.0, 250.0, NAN, NAN),
    VehicleClass("light_diesel", 0.08, "diesel", 0, 45.0, NAN, NAN, 450.0, 6.0, 0.0),
    VehicleClass("heavy_diesel", 0.10, "diesel", 1, 35.0, NAN, NAN, 700.0, 10.0, 0.0),
    VehicleClass("natural_gas_bus", 0.04, "natural_gas", 1, 30.0, 0.05, 40.0, 400.0, NAN, NAN),
    VehicleClass("electric", 0.08, "electric", 4, 45.0, NAN, NAN, NAN, NAN, NAN),
)
#: How a high emitter's readings compare with its class's median.
_HIGH_FACTOR = {"co_pct": 20.0, "hc_ppm": 6.0, "no_ppm": 6.0, "opacity_pct": 6.0}


def _plate(rng: np.random.Generator) -> str:
    return "京" + str(rng.choice(_LETTERS)) + "".join(rng.choice(_ALNUM, 5).tolist())


class RoadsideSite:
    """Passes measured by one parked remote-sensing vehicle at ``(lon, lat)``."""

    def __init__(
        self,
        lon: float,
        lat: float,
        *,
        site_id: str = "A110108001",
        vehicles_per_hour: float = 900.0,
        high_emitters: int = 5,
        high_emitter_share: float = 0.03,
        slope_pct: float = 1.5,
        seed: int = 1,
    ) -> None:
        if not 0 <= high_emitter_share < 1:
            raise ValueError("the high-emitter share must be in [0, 1)")
        self.lon, self.lat, self.site_id = lon, lat, site_id
        self.rate_per_s = vehicles_per_hour / 3600.0
        self.high_share = high_emitter_share if high_emitters else 0.0
        self.slope_pct = slope_pct
        self._rng = np.random.default_rng(seed)
        shares = np.array([c.share for c in CLASSES])
        self._shares = shares / shares.sum()
        # The recurring high emitters: diesel trucks and old gasoline cars.
        emitting = [i for i, c in enumerate(CLASSES) if c.fuel_type in ("gasoline", "diesel")]
        self.high_plates = [_plate(self._rng) for _ in range(high_emitters)]
        self._high_class = self._rng.choice(emitting, size=high_emitters).tolist()
        self._sequence = 0

    def advance(self, now: datetime, dt_s: float = 1.0) -> list[dict[str, Any]]:
        """The passes measured in the ``dt_s`` seconds ending at ``now`` (timezone-aware)."""
        rng = self._rng
        n = int(rng.poisson(self.rate_per_s * dt_s))
        end_ms = int(now.timestamp() * 1000)
        offsets = np.sort(rng.uniform(0, dt_s * 1000, n)).astype(np.int64)
        return [self._pass(end_ms - int(dt_s * 1000) + int(o)) for o in offsets]

    def _pass(self, ts_ms: int) -> dict[str, Any]:
        rng = self._rng
        self._sequence += 1
        high = bool(rng.random() < self.high_share)
        if high:
            k = int(rng.integers(len(self.high_plates)))
            plate, cls = self.high_plates[k], CLASSES[self._high_class[k]]
        else:
            plate, cls = _plate(rng), CLASSES[int(rng.choice(len(CLASSES), p=self._shares))]
        # A high emitter is caught most, not all, of the time (cold engine, light load).
        emitting = high and rng.random() < 0.9
        readings = {}
        for name in ("co_pct", "hc_ppm", "no_ppm", "opacity_pct"):
            median = getattr(cls, name)
            if np.isnan(median):
                continue
            factor = _HIGH_FACTOR[name] if emitting else 1.0
            readings[name] = round(float(median * factor * rng.lognormal(0.0, 0.35)), 3)
        if not np.isnan(cls.ringelmann):
            readings["ringelmann"] = float(rng.integers(2, 4) if emitting else rng.integers(0, 2))
        if readings:
            readings["co2_pct"] = round(float(rng.normal(13.0, 0.8)), 2)
        day = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y%m%d")
        stem = f"{self.site_id}/{day}/{self._sequence:06d}"
        return {
            "ts": ts_ms,
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "site_id": self.site_id,
            "lane": int(rng.integers(1, 3)),
            "plate": plate,
            "plate_color": cls.plate_color,
            "fuel_type": cls.fuel_type,
            "speed_kmh": round(float(np.clip(rng.normal(cls.speed_kmh, 10.0), 5.0, 100.0)), 1),
            "accel_ms2": round(float(rng.normal(0.4, 0.5)), 2),
            "slope_pct": self.slope_pct,
            "temp_c": round(float(rng.normal(22.0, 0.5)), 1),
            "rh_pct": round(float(rng.uniform(35.0, 60.0)), 1),
            "pressure_kpa": round(float(rng.normal(101.3, 0.1)), 2),
            "wind_speed_ms": round(float(rng.gamma(3.0, 0.8)), 1),
            **readings,
            "images": [f"{stem}_far.jpg", f"{stem}_near.jpg"],
        }


def _lonlat(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected LON,LAT") from None
    return lon, lat


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the remote-sensing simulator."""
    parser.add_argument("--vehicle-id", default="rs-001", help="the measuring vehicle's id")
    parser.add_argument("--site-id", default="A110108001", help="the monitoring site's code")
    parser.add_argument(
        "--site",
        type=_lonlat,
        metavar="LON,LAT",
        help="where it is parked (default: beside the first street of --roads)",
    )
    parser.add_argument(
        "--roads", type=Path, default=DEFAULT_ROADS, help="GeoJSON road network of the site"
    )
    parser.add_argument("--vehicles-per-hour", type=float, default=900.0, help="default 900")
    parser.add_argument(
        "--high-emitters", type=int, default=5, help="recurring high-emitting plates (default 5)"
    )
    parser.add_argument(
        "--high-emitter-share",
        type=float,
        default=0.03,
        help="share of passes by those plates (default 0.03)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--duration-s", type=float, help="stop after this many seconds (default: Ctrl-C)"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Publish the site's passes once a second until Ctrl-C or ``--duration-s``; returns the
    exit status."""
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.site is not None:
            lon, lat = args.site
        else:
            lon, lat = load_network(args.roads).street_midpoint(0)
            lat += 4e-5  # parked about 4 m off the centre line
        site = RoadsideSite(
            lon,
            lat,
            site_id=args.site_id,
            vehicles_per_hour=args.vehicles_per_hour,
            high_emitters=args.high_emitters,
            high_emitter_share=args.high_emitter_share,
            seed=args.seed,
        )
    except (TelemetryError, ValueError) as exc:
        log.error("remote-sensing simulator: %s", exc)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    topic = topic_for(settings.mqtt_topic_prefix, args.vehicle_id, Kind.REMOTE_SENSING).encode()
    end = None if args.duration_s is None else time.time() + args.duration_s
    passes = 0
    try:
        async with vehicle_publisher(settings, args.vehicle_id, Kind.REMOTE_SENSING) as publisher:
            log.info("site %s at %.6f,%.6f; high emitters %s", site.site_id, lon, lat,
                     ", ".join(site.high_plates))  # fmt: skip
            next_s = float(int(time.time()) + 1)
            while not stop.is_set() and (end is None or next_s <= end):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_s - time.time())):
                        await stop.wait()
                if stop.is_set():
                    break
                batch = site.advance(datetime.fromtimestamp(next_s, UTC))
                await publisher.publish([(topic, _encoder.encode(p)) for p in batch])
                passes += len(batch)
                next_s += 1.0
            await publisher.drain(timeout_s=10.0)
            print(f"{passes} passes; {publisher.acknowledged} messages acknowledged")
    except TelemetryError as exc:
        log.error("remote-sensing simulator: %s", exc)
        return 2
    return 0
