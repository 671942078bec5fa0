"""``telemetry simulate``: drive walk-through vehicles over MQTT in real time, or load-test."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from simulators.accounts import fleet_publishers
from simulators.fleet import Fleet
from simulators.hj212 import drive_hj212, register_analysers
from simulators.load import run_load
from simulators.network import RoadNetwork, load_network
from simulators.plume import Plumes, Source, default_sources, parse_source
from simulators.publisher import drive_fleet
from telemetry.errors import TelemetryError, ValidationError
from telemetry.kinds.contract import Kind
from telemetry.settings import Settings

__all__ = ["DEFAULT_ROADS", "add_arguments", "run"]

log = logging.getLogger(__name__)

DEFAULT_ROADS = Path(__file__).resolve().parent.parent / "data" / "roads" / "demo.geojson"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``telemetry simulate``."""
    parser.add_argument(
        "--vehicles", type=_positive_int, help="number of vehicles (default 5; 200 with --load)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--duration-s", type=_positive_float, help="stop after this many seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--roads", type=Path, default=DEFAULT_ROADS, help="GeoJSON road network to drive"
    )
    parser.add_argument(
        "--source",
        action="append",
        metavar="LON,LAT,POLLUTANT,PEAK",
        help="a pollution source (repeatable; default: a dust and a traffic source on the roads)",
    )
    parser.add_argument(
        "--gap-every-s", type=_positive_float, help="each vehicle loses coverage this often"
    )
    parser.add_argument(
        "--gap-length-s",
        type=_positive_float,
        default=30.0,
        help="seconds without coverage; readings are buffered and flushed as one array",
    )
    parser.add_argument("--vehicle-prefix", help="vehicle id prefix (default 'walk-' or 'load-')")
    parser.add_argument(
        "--hj212-tcp",
        metavar="HOST:PORT",
        help="send the vehicles as HJ 212 data loggers to this TCP listener instead of MQTT",
    )
    load = parser.add_argument_group("load test")
    load.add_argument("--load", action="store_true", help="publish as fast as --rate, then report")
    load.add_argument(
        "--rate", type=_positive_float, default=20_000.0, help="readings/s (default 20000)"
    )
    load.add_argument(
        "--count", type=_positive_int, help="readings to publish (default 10 s at --rate)"
    )
    load.add_argument(
        "--publishers",
        type=_positive_int,
        default=4,
        help="pacing tasks the vehicles are divided among (default 4); each vehicle publishes "
        "over its own connection with its own account",
    )
    load.add_argument(
        "--settle-s",
        type=_positive_float,
        default=15.0,
        help="stop waiting once the stored count has not grown for this long (default 15)",
    )
    load.add_argument(
        "--keep",
        action="store_true",
        help="keep what the run wrote (default: remove its vehicles' rows and the alert "
        "episodes only they drove)",
    )


def _sources(args: argparse.Namespace, network: RoadNetwork) -> list[Source]:
    if args.source:
        return [parse_source(text) for text in args.source]
    return default_sources(network)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _demo(settings: Settings, args: argparse.Namespace, network: RoadNetwork) -> int:
    sources = _sources(args, network)
    fleet = Fleet(
        network,
        Plumes(sources, network),
        vehicles=args.vehicles or 5,
        seed=args.seed,
        prefix=args.vehicle_prefix or "walk-",
        gap_every_s=args.gap_every_s,
        gap_length_s=args.gap_length_s,
        max_readings_per_message=settings.max_readings_per_message,
    )
    for source in sources:
        log.info(
            "source %s peak %g at %.6f,%.6f", source.pollutant, source.peak, source.lon, source.lat
        )
    stop = asyncio.Event()
    _stop_on_signals(stop)
    if args.hj212_tcp:
        return await _hj212(settings, args, fleet, stop)
    async with fleet_publishers(settings, fleet.vehicle_ids, Kind.WALKTHROUGH) as publishers:
        log.info("driving %d vehicles; Ctrl-C stops", len(fleet.vehicle_ids))
        readings = await drive_fleet(
            fleet, publishers, settings.mqtt_topic_prefix, stop, duration_s=args.duration_s
        )
        published = sum(p.published for p in publishers.values())
        acknowledged = sum(p.acknowledged for p in publishers.values())
        print(
            f"{readings} readings from {len(fleet.vehicle_ids)} vehicles; "
            f"{published} messages published, {acknowledged} acknowledged"
        )
    return 0


async def _hj212(
    settings: Settings, args: argparse.Namespace, fleet: Fleet, stop: asyncio.Event
) -> int:
    host, _, port = args.hj212_tcp.rpartition(":")
    if not host or not port.isdigit():
        raise ValidationError("--hj212-tcp: HOST:PORT")
    stations = await register_analysers(settings, fleet.vehicle_ids)
    log.info("driving %d HJ 212 data loggers to %s; Ctrl-C stops", len(stations), args.hj212_tcp)
    try:
        sent, replies = await drive_hj212(
            fleet, stations, host, int(port), stop, duration_s=args.duration_s
        )
    except OSError as exc:
        raise TelemetryError(f"cannot reach the HJ 212 listener {args.hj212_tcp}: {exc}") from exc
    print(f"{sent} HJ 212 packets from {len(stations)} data loggers; {replies} data replies")
    return 0


async def _load(settings: Settings, args: argparse.Namespace, network: RoadNetwork) -> int:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    report = await run_load(
        settings,
        network,
        _sources(args, network),
        rate=args.rate,
        count=args.count or int(args.rate * 10),
        vehicles=args.vehicles or 200,
        publishers=args.publishers,
        seed=args.seed,
        prefix=args.vehicle_prefix or "load-",
        stop=stop,
        settle_s=args.settle_s,
        keep=args.keep,
    )
    print(report)
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``telemetry simulate`` with parsed ``args``; returns the exit status."""
    try:
        if args.gap_every_s is not None and args.gap_length_s >= args.gap_every_s:
            raise ValidationError("--gap-length-s must be shorter than --gap-every-s")
        network = load_network(args.roads)
        main = _load if args.load else _demo
        return asyncio.run(main(settings, args, network))
    except TelemetryError as exc:
        print(f"telemetry simulate: {exc}", file=sys.stderr)
        return 2
