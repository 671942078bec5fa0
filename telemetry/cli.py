"""The ``telemetry`` command: migrate, serve, ingest, roads import and the simulators."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
    app.state.resources.stopping = lambda: server.should_exit
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


def _add_broker_commands(sub: Any) -> None:
    """``telemetry vehicles register|revoke|list`` and ``telemetry broker run``
    (docs/adr/0007-broker-accounts.md)."""
    from telemetry.accounts.commands import cli_actor
    from telemetry.broker import repository, vehicles
    from telemetry.broker.config import Listeners
    from telemetry.broker.runner import BrokerOptions, run_broker

    async def on_database(settings: Settings, work: Any) -> Any:
        import asyncpg

        try:
            conn = await asyncpg.connect(settings.database_url)
        except (OSError, asyncpg.PostgresError) as exc:
            raise TelemetryError(f"cannot connect to the database: {exc}") from exc
        try:
            return await work(conn)
        finally:
            await conn.close()

    def register(settings: Settings, args: argparse.Namespace) -> int:
        reserved = {settings.mqtt.username} if settings.mqtt.username else set()
        password = asyncio.run(
            on_database(
                settings,
                lambda c: vehicles.register(
                    c,
                    args.vehicle_id,
                    args.kind,
                    actor=cli_actor(),
                    new_password=args.new_password,
                    reserved=reserved,
                    hj212=_analyser(args),
                ),
            )
        )
        if password is None:
            print(
                f"{args.vehicle_id}: HJ 212 analyser {args.hj212_mn} set; MQTT password unchanged"
            )
            return 0
        print(f"registered {args.vehicle_id} ({args.kind}): MQTT username {args.vehicle_id},")
        print(f"publishes to {settings.mqtt_topic_prefix}/{args.kind}/{args.vehicle_id} only.")
        print("Its password, shown only this once (stored as a hash):")
        print(password)
        return 0

    def _analyser(args: argparse.Namespace) -> Any:
        if args.hj212_mn is None:
            if args.hj212_pw or args.position or args.hj212_tolerate or args.hj212_unit:
                raise TelemetryError("--hj212-pw, --position, … need --hj212-mn")
            return None
        return vehicles.analyser(
            args.vehicle_id, args.kind, args.hj212_mn, pw=args.hj212_pw, position=args.position,
            tolerate=args.hj212_tolerate, position_fields=args.hj212_position_fields,
            timezone=args.hj212_timezone, units=args.hj212_unit,
        )  # fmt: skip

    def revoke(settings: Settings, args: argparse.Namespace) -> int:
        asyncio.run(
            on_database(settings, lambda c: vehicles.revoke(c, args.vehicle_id, actor=cli_actor()))
        )
        print(f"revoked {args.vehicle_id}: the broker disconnects it and refuses it from now on")
        return 0

    def list_(settings: Settings, args: argparse.Namespace) -> int:
        for a in asyncio.run(on_database(settings, repository.list_accounts)):
            state = "enabled" if a.enabled else f"revoked {a.revoked_at:%Y-%m-%d %H:%M}"
            sim = " (simulated)" if a.simulated else ""
            print(f"{a.vehicle_id}\t{a.kind}\t{state}{sim}")
        return 0

    def broker_run(settings: Settings, args: argparse.Namespace) -> int:
        listeners = Listeners(
            args.port,
            args.bind,
            settings.broker_tls_port,
            settings.broker_tls_certfile,
            settings.broker_tls_keyfile,
        )
        options = BrokerOptions(
            listeners,
            Path(args.state_dir),
            extra_passwords=args.extra_passwords,
            extra_acl=args.extra_acl,
        )
        if args.config:
            options = dataclasses.replace(options, base_config=Path(args.config))
        return asyncio.run(run_broker(settings, options))

    veh = sub.add_parser("vehicles", help="vehicles' broker accounts").add_subparsers(
        dest="vehicles", required=True
    )
    reg = veh.add_parser("register", help="register a vehicle; prints its new MQTT password last")
    reg.add_argument("vehicle_id")
    reg.add_argument("--kind", required=True, help="walkthrough, remote_sensing or emergency")
    reg.add_argument(
        "--new-password", action="store_true", help="replace the password of a registered vehicle"
    )
    hj = reg.add_argument_group("HJ 212 analyser (docs/adr/0010-hj212.md)")
    hj.add_argument("--hj212-mn", help="the MN its HJ 212 analyser sends")
    hj.add_argument("--hj212-pw", help="the analyser's PW (6 characters); unset: not checked")
    hj.add_argument("--position", metavar="LAT,LON", help="a parked site's fixed position")
    hj.add_argument("--hj212-tolerate", action="append", default=[], metavar="DEVIATION")
    hj.add_argument("--hj212-position-fields", action="append", default=[], metavar="LON,LAT")
    hj.add_argument("--hj212-timezone", help="DataTime's zone (default China Standard Time)")
    hj.add_argument("--hj212-unit", action="append", default=[], metavar="CODE=UNIT")
    reg.set_defaults(func=register)
    rev = veh.add_parser("revoke", help="disable a vehicle's account")
    rev.add_argument("vehicle_id")
    rev.set_defaults(func=revoke)
    veh.add_parser("list", help="registered vehicles").set_defaults(func=list_)

    broker = sub.add_parser("broker", help="the MQTT broker").add_subparsers(
        dest="broker", required=True
    )
    run = broker.add_parser(
        "run", help="run Mosquitto with the project's configuration and the accounts' files"
    )
    run.add_argument("--port", type=int, default=1883, help="plain MQTT port (default 1883)")
    run.add_argument("--bind", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    run.add_argument("--state-dir", required=True, help="persistence, generated files, pid")
    run.add_argument("--config", help="shared configuration (default deploy/mosquitto/...)")
    run.add_argument("--extra-passwords", type=Path, help="more accounts: a password file")
    run.add_argument("--extra-acl", type=Path, help="ACL lines for those accounts")
    run.set_defaults(func=broker_run)


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

    _add_broker_commands(sub)

    from telemetry.accounts import commands as users

    users.add_parser(sub)  # telemetry users add|list|set-role|disable|enable|… (people)

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
