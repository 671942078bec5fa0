"""An emergency (应急) vehicle surveying the plume of a point release, over MQTT.

The plume is a steady-state Gaussian plume (:func:`gaussian_plume`) under a given wind and
Pasquill–Gifford stability class. The vehicle uses the HJ 589 air sampling layout (docs/domain.md
§4.1): a control point upwind, then arcs across the plume downwind at set distances, reading
once a second. Run ``python -m simulators.emergency --help``; with ``--api-url`` and
``--open-incident`` it first opens the incident over the HTTP API, otherwise it prints the
``curl`` command that would.

The trajectory and readings are pure (:func:`survey_route`, :func:`survey_records`); only
:func:`run` touches the network and the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from simulators.accounts import vehicle_publisher
from telemetry.errors import TelemetryError, ValidationError
from telemetry.kinds.contract import Kind
from telemetry.kinds.emergency.detection import MOLAR_MASS_G_MOL, mgm3_to_ppm
from telemetry.settings import Settings

__all__ = [
    "BRIGGS_RURAL",
    "Release",
    "add_arguments",
    "api_token",
    "briggs_sigmas",
    "gaussian_plume",
    "main",
    "run",
    "survey_records",
    "survey_route",
]

log = logging.getLogger(__name__)

_M_PER_DEG_LAT = 111_195.0

#: Briggs (1973) open-country fits of the Pasquill–Gifford dispersion parameters, valid for
#: roughly 100 m to 10 km downwind: σ = a·x·(1 + b·x)^c, as (a, b, c) for σy and for σz.
BRIGGS_RURAL: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "A": ((0.22, 1e-4, -0.5), (0.20, 0.0, 1.0)),
    "B": ((0.16, 1e-4, -0.5), (0.12, 0.0, 1.0)),
    "C": ((0.11, 1e-4, -0.5), (0.08, 2e-4, -0.5)),
    "D": ((0.08, 1e-4, -0.5), (0.06, 1.5e-3, -0.5)),
    "E": ((0.06, 1e-4, -0.5), (0.03, 3e-4, -1.0)),
    "F": ((0.04, 1e-4, -0.5), (0.016, 3e-4, -1.0)),
}


def briggs_sigmas(x_m: np.ndarray, stability: str) -> tuple[np.ndarray, np.ndarray]:
    """σy and σz (m) at downwind distance ``x_m`` (> 0) for a stability class A–F."""
    try:
        (ay, by, cy), (az, bz, cz) = BRIGGS_RURAL[stability]
    except KeyError:
        raise ValidationError(f"stability class must be one of A–F, not {stability!r}") from None
    x = np.asarray(x_m, dtype=np.float64)
    return ay * x * (1 + by * x) ** cy, az * x * (1 + bz * x) ** cz


def gaussian_plume(
    x_m: np.ndarray,
    y_m: np.ndarray,
    *,
    emission_g_s: float,
    wind_speed_ms: float,
    stability: str,
    release_height_m: float = 0.0,
    receptor_height_m: float = 1.5,
) -> np.ndarray:
    """Concentration (mg/m³) of a continuous point release, steady state, with ground
    reflection::

        C = Q / (2π u σy σz) · exp(−y² / 2σy²)
            · [exp(−(z − H)² / 2σz²) + exp(−(z + H)² / 2σz²)]

    ``x_m`` downwind and ``y_m`` crosswind of the source (m), Q in g/s, u in m/s, H the
    release height and z the receptor height (m); σy, σz from :func:`briggs_sigmas`. Zero
    upwind of the source (x ≤ 0).
    """
    if emission_g_s < 0 or wind_speed_ms <= 0:
        raise ValidationError("emission must be ≥ 0 g/s and wind speed > 0 m/s")
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    downwind = x > 0
    xs = np.where(downwind, x, 1.0)
    sy, sz = briggs_sigmas(xs, stability)
    z, h = receptor_height_m, release_height_m
    vertical = np.exp(-((z - h) ** 2) / (2 * sz**2)) + np.exp(-((z + h) ** 2) / (2 * sz**2))
    c_g_m3 = (
        emission_g_s / (2 * math.pi * wind_speed_ms * sy * sz) * np.exp(-(y**2) / (2 * sy**2))
    ) * vertical
    return np.where(downwind, c_g_m3 * 1000.0, 0.0)


@dataclass(frozen=True, slots=True)
class Release:
    """A point release and the weather it disperses in."""

    lat: float
    lon: float
    substance: str
    emission_g_s: float
    wind_speed_ms: float
    wind_from_deg: float  # meteorological: the direction the wind blows from
    stability: str = "D"
    release_height_m: float = 0.0

    def local_xy(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """East and north of the source (m), equirectangular (fine within tens of km)."""
        east = (np.asarray(lon) - self.lon) * _M_PER_DEG_LAT * math.cos(math.radians(self.lat))
        north = (np.asarray(lat) - self.lat) * _M_PER_DEG_LAT
        return east, north

    def latlon(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of :meth:`local_xy`."""
        lat = self.lat + np.asarray(north) / _M_PER_DEG_LAT
        lon = self.lon + np.asarray(east) / (_M_PER_DEG_LAT * math.cos(math.radians(self.lat)))
        return lat, lon

    def concentration_mgm3(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """The plume's concentration at positions (mg/m³)."""
        east, north = self.local_xy(lat, lon)
        to = math.radians(self.wind_from_deg + 180.0)  # the direction the plume travels
        ux, uy = math.sin(to), math.cos(to)
        x = east * ux + north * uy
        y = -east * uy + north * ux
        return gaussian_plume(
            x,
            y,
            emission_g_s=self.emission_g_s,
            wind_speed_ms=self.wind_speed_ms,
            stability=self.stability,
            release_height_m=self.release_height_m,
        )


def survey_route(
    release: Release,
    *,
    arcs_m: tuple[float, ...] = (300.0, 600.0, 1000.0, 2000.0, 3000.0),
    half_width_deg: float = 45.0,
    upwind_m: float = 500.0,
    speed_ms: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (lat, lon) one second apart: from an upwind control point to arcs across
    the plume downwind at ``arcs_m``, each swept ±``half_width_deg`` about the plume axis,
    alternating direction, driving ``speed_ms`` between them."""
    if speed_ms <= 0 or not arcs_m:
        raise ValidationError("need a positive speed and at least one arc")
    axis = release.wind_from_deg + 180.0
    points = [(release.wind_from_deg, upwind_m)]
    for i, arc_m in enumerate(arcs_m):
        sweep = np.linspace(-half_width_deg, half_width_deg, max(3, int(2 * half_width_deg) + 1))
        if i % 2:
            sweep = sweep[::-1]
        points.extend((axis + a, arc_m) for a in sweep.tolist())
    bearing = np.radians([p[0] for p in points])
    radius = np.array([p[1] for p in points])
    east, north = radius * np.sin(bearing), radius * np.cos(bearing)
    step = np.hypot(np.diff(east), np.diff(north))
    along = np.r_[0.0, np.cumsum(step)]
    at = np.arange(0.0, along[-1] + 1e-9, speed_ms)
    return release.latlon(np.interp(at, along, east), np.interp(at, along, north))


def survey_records(
    release: Release,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    start_ms: int,
    seed: int = 1,
    noise: float = 0.1,
) -> list[dict[str, Any]]:
    """One record per position, a second apart from ``start_ms``: the plume's concentration
    in ppm (an electrochemical sensor) with multiplicative noise, and the weather."""
    molar_mass = MOLAR_MASS_G_MOL.get(release.substance)
    if molar_mass is None:
        known = ", ".join(sorted(MOLAR_MASS_G_MOL))
        raise ValidationError(f"substance must have a known molar mass: one of {known}")
    rng = np.random.default_rng(seed)
    mgm3 = release.concentration_mgm3(lat, lon)
    ppm = mgm3_to_ppm(mgm3, molar_mass) * rng.lognormal(0.0, noise, size=mgm3.shape)
    return [
        {
            "ts": start_ms + 1000 * i,
            "lat": round(float(la), 7),
            "lon": round(float(lo), 7),
            "wind_speed_ms": release.wind_speed_ms,
            "wind_dir_deg": release.wind_from_deg % 360.0,
            "gases": {
                release.substance: {"value": round(float(v), 3), "unit": "ppm", "sensor": "EC"}
            },
        }
        for i, (la, lo, v) in enumerate(zip(lat.tolist(), lon.tolist(), ppm.tolist(), strict=True))
    ]


# --- command line --------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _arcs(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated metres, e.g. 300,600,1000") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("arc radii must be positive")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the emergency survey simulator."""
    parser.add_argument("--lat", type=float, default=39.9905, help="release latitude")
    parser.add_argument("--lon", type=float, default=116.3179, help="release longitude")
    parser.add_argument("--substance", default="h2s", help="released gas (default h2s)")
    parser.add_argument(
        "--emission-g-s", type=_positive, default=200.0, help="release rate, g/s (default 200)"
    )
    parser.add_argument("--wind-speed-ms", type=_positive, default=3.0, help="m/s (default 3)")
    parser.add_argument(
        "--wind-dir-deg", type=float, default=270.0, help="wind FROM, degrees (default 270: west)"
    )
    parser.add_argument(
        "--stability", choices=sorted(BRIGGS_RURAL), default="D", help="Pasquill class (D)"
    )
    parser.add_argument("--release-height-m", type=float, default=0.0)
    parser.add_argument(
        "--arcs-m",
        type=_arcs,
        default=(300.0, 600.0, 1000.0, 2000.0, 3000.0),
        help="downwind survey arcs, metres (default 300,600,1000,2000,3000)",
    )
    parser.add_argument("--speed-ms", type=_positive, default=8.0, help="vehicle speed, m/s")
    parser.add_argument("--vehicle", default="emerg-01", help="vehicle id (default emerg-01)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="publish the whole survey at once, timestamped over the last minutes",
    )
    parser.add_argument("--api-url", help="the service's HTTP base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--open-incident", action="store_true", help="open the incident over --api-url first"
    )
    parser.add_argument(
        "--api-user",
        help="open it as this account (officer or admin), logging in with the password in "
        "TELEMETRY_API_PASSWORD (asked for when unset); without it, the token in "
        "TELEMETRY_API_TOKEN (see `telemetry users token`) is sent",
    )


def _release(args: argparse.Namespace) -> Release:
    return Release(
        lat=args.lat,
        lon=args.lon,
        substance=args.substance.strip().lower(),
        emission_g_s=args.emission_g_s,
        wind_speed_ms=args.wind_speed_ms,
        wind_from_deg=args.wind_dir_deg,
        stability=args.stability,
        release_height_m=args.release_height_m,
    )


def _incident_body(release: Release, started_ms: int) -> dict[str, Any]:
    started = datetime.fromtimestamp(started_ms / 1000, UTC).isoformat()
    return {
        "name": f"simulated {release.substance} release",
        "lat": release.lat,
        "lon": release.lon,
        "started_at": started,
        "suspected_substances": [release.substance],
    }


def api_token(api_url: str, user: str | None) -> str:
    """A bearer token: logged in as ``user`` (password from TELEMETRY_API_PASSWORD, or asked
    for), or else TELEMETRY_API_TOKEN. The token is the account the incident is opened as."""
    if user is None:
        token = os.environ.get("TELEMETRY_API_TOKEN")
        if not token:
            raise ValidationError(
                "--open-incident needs an account: --api-user NAME (password in "
                "TELEMETRY_API_PASSWORD), or a token in TELEMETRY_API_TOKEN"
            )
        return token
    password = os.environ.get("TELEMETRY_API_PASSWORD")
    if password is None:
        import getpass

        password = getpass.getpass(f"password of {user}: ")
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(
        api_url.rstrip("/") + "/api/v1/auth/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["access_token"])
    except urllib.error.HTTPError as exc:
        raise TelemetryError(f"could not log in as {user} at {api_url}: {_detail(exc)}") from exc
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        raise TelemetryError(f"could not log in as {user} at {api_url}: {exc}") from exc


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return f"{exc.code} {json.load(exc)['detail']}"
    except (OSError, KeyError, ValueError, TypeError):
        return str(exc)


def _open_incident(api_url: str, body: dict[str, Any], token: str) -> int:
    request = urllib.request.Request(
        api_url.rstrip("/") + "/api/v1/incidents",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(json.load(response)["id"])
    except urllib.error.HTTPError as exc:
        raise TelemetryError(f"could not open the incident at {api_url}: {_detail(exc)}") from exc
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        raise TelemetryError(f"could not open the incident at {api_url}: {exc}") from exc


async def _publish(settings: Settings, release: Release, args: argparse.Namespace) -> int:
    lat, lon = survey_route(release, arcs_m=args.arcs_m, speed_ms=args.speed_ms)
    n = lat.shape[0]
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - 1000 * n if args.no_wait else now_ms
    records = survey_records(release, lat, lon, start_ms=start_ms, seed=args.seed)
    topic = f"{settings.mqtt_topic_prefix}/emergency/{args.vehicle}".encode()
    async with vehicle_publisher(settings, args.vehicle, Kind.EMERGENCY) as publisher:
        if args.no_wait:
            await publisher.publish([(topic, json.dumps(r).encode()) for r in records])
        else:
            log.info("surveying for %d s; Ctrl-C stops", n)
            for record in records:
                delay = record["ts"] / 1000 - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await publisher.publish([(topic, json.dumps(record).encode())])
        await publisher.drain(timeout_s=10.0)
        print(f"{n} readings published, {publisher.acknowledged} acknowledged")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Open (or print how to open) the incident, then survey its plume; the exit status."""
    try:
        release = _release(args)
        started_ms = time.time_ns() // 1_000_000 - 3_600_000
        body = _incident_body(release, started_ms)
        if args.open_incident:
            if not args.api_url:
                raise ValidationError("--open-incident needs --api-url")
            token = api_token(args.api_url, args.api_user)
            print(f"opened incident {_open_incident(args.api_url, body, token)}")
        else:
            base = args.api_url or "http://127.0.0.1:8000"
            print(
                "open the incident as an officer with (TOKEN from POST /api/v1/auth/token or "
                "`telemetry users token NAME`):\n  curl -X POST -H 'Content-Type: "
                'application/json\' -H "Authorization: Bearer $TOKEN" '
                f"{base}/api/v1/incidents -d '{json.dumps(body)}'"
            )
        return asyncio.run(_publish(settings, release, args))
    except TelemetryError as exc:
        print(f"emergency simulator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.emergency``."""
    parser = argparse.ArgumentParser(prog="python -m simulators.emergency", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return run(Settings(), args)


if __name__ == "__main__":
    sys.exit(main())
