"""The ``telemetry`` command: migrate, serve, ingest, roads import and the simulators."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError as SettingsError

from telemetry.errors import TelemetryError
from telemetry.settings import Settings

__all__ = ["main"]

log = logging.getLogger("telemetry")


def _settings() -> Settings:
    try:
        return Settings()
    except SettingsError as exc:
        lines = [
            f"  TELEMETRY_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        ]
        sys.exit("invalid settings:\n" + "\n".join(lines))


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from telemetry.db import ensure_database
    from telemetry.migrate import migrate

    async def run() -> None:
        if await ensure_database(settings.database_url):
            log.info("created database")
        report = await migrate(settings.database_url, timescaledb=settings.timescaledb)
        backend = "TimescaleDB" if report.timescaledb else "plain PostgreSQL"
        print(f"migrations applied: {report.applied or 'none'}; backend: {backend}")
        if report.pending:
            print(f"pending until TimescaleDB is available: {report.pending}")

    asyncio.run(run())
    return 0


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    if args.no_ingest:
        settings = settings.model_copy(update={"ingest_enabled": False})
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_level="info")
    )
    failed: list[str] = []

    def stop_serving(why: str) -> None:
        # The ingest worker failed: shut down (gracefully) and exit non-zero so that the
        # supervisor restarts the process; /healthz answers 503 until the server stops.
        failed.append(why)
        server.should_exit = True

    app.state.resources.on_ingest_failure = stop_serving
    server.run()
    if failed:
        log.error("stopped: ingest worker failed: %s", failed[0])
        return 1
    return 0


def _cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from telemetry.ingest.worker import run_worker

    asyncio.run(run_worker(settings))
    return 0


def _cmd_roads_import(settings: Settings, args: argparse.Namespace) -> int:
    from telemetry.roads.importer import import_roads

    length = args.segment_length or settings.segment_length_m
    report = asyncio.run(
        import_roads(settings, Path(args.path), source=args.source, segment_length_m=length)
    )
    print(report)
    return 0


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    simulator: Any = args.simulator
    return int(simulator.run(settings, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemetry", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "migrate", help="create the database if needed and apply migrations"
    ).set_defaults(func=_cmd_migrate)

    serve = sub.add_parser(
        "serve", help="run the HTTP API and, unless --no-ingest, the ingest worker"
    )
    serve.add_argument("--no-ingest", action="store_true", help="serve the API only")
    serve.set_defaults(func=_cmd_serve)

    sub.add_parser(
        "ingest", help="run an ingest worker only (scale out by starting more)"
    ).set_defaults(func=_cmd_ingest)

    roads = sub.add_parser("roads", help="road network commands").add_subparsers(
        dest="roads", required=True
    )
    imp = roads.add_parser(
        "import", help="import roads from GeoJSON or OpenStreetMap (.osm, .osm.pbf)"
    )
    imp.add_argument("path")
    imp.add_argument("--source", help="name recorded with the segments (default: the file name)")
    imp.add_argument(
        "--segment-length", type=float, help="metres (default TELEMETRY_SEGMENT_LENGTH_M)"
    )
    imp.set_defaults(func=_cmd_roads_import)

    from simulators import emergency, remote_sensing, walkthrough

    # One simulator per kind; each module has add_arguments(parser) and run(settings, args).
    for command, simulator, text in (
        (
            "simulate",
            walkthrough,
            "drive simulated walk-through vehicles over MQTT (and load-test)",
        ),
        (
            "simulate-remote-sensing",
            remote_sensing,
            "a roadside remote-sensing vehicle measuring passing traffic (some high emitters)",
        ),
        (
            "simulate-emergency",
            emergency,
            "an emergency vehicle surveying a plume around an incident",
        ),
    ):
        sim = sub.add_parser(command, help=text)
        simulator.add_arguments(sim)
        sim.set_defaults(func=_cmd_simulate, simulator=simulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = _settings()
    try:
        return int(args.func(settings, args))
    except TelemetryError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    sys.exit(main())
