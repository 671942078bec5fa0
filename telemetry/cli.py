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
                    units=vehicles.declared_units(args.unit),
                ),
            )
        )
        if password is None:
            what = [f"HJ 212 analyser {args.hj212_mn}"] if args.hj212_mn else []
            what += ["declared units"] if args.unit else []
            print(f"{args.vehicle_id}: {' and '.join(what)} set; MQTT password unchanged")
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
    reg.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="CHANNEL=UNIT",
        help="a unit its readings send a channel in, e.g. NO2=ppb (a reading's own units win; "
        "docs/domain.md §5.6); CHANNEL= removes one; repeatable",
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
    _add_lag_and_calibration_commands(veh)

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


def _add_lag_and_calibration_commands(veh: Any) -> None:
    """``telemetry vehicles lag set|unset|list|estimate`` and ``telemetry vehicles calibration
    add|list|delete`` (docs/domain.md §5.8, §5.9). Changes are audited as ``cli:<user>``."""
    from datetime import datetime

    from telemetry.accounts.commands import cli_actor, on_pool
    from telemetry.kinds.walkthrough.record import POLLUTANTS

    def pollutant(text: str) -> str:
        if text not in POLLUTANTS:
            raise argparse.ArgumentTypeError(f"one of {', '.join(POLLUTANTS)}")
        return text

    def when(text: str) -> datetime:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
        if value.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. +08:00)")
        return value

    def lon_lat(text: str) -> tuple[float, float]:
        try:
            lon, lat = (float(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"LON,LAT expected, got {text!r}") from None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise argparse.ArgumentTypeError(f"{text!r} is not a position (LON,LAT)")
        return lon, lat

    def lag_set(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.store import lags

        if not 0 <= args.seconds <= settings.lag_max_s:
            raise TelemetryError(f"the lag must lie within 0..{settings.lag_max_s:g} s")
        row = on_pool(
            settings,
            lambda p: lags.set_lag(
                p, args.vehicle_id, args.pollutant, args.seconds, by=cli_actor()
            ),
        )
        print(f"{row['vehicle_id']}\t{row['pollutant']}\t{row['lag_s']:g} s\t{row['method']}")
        return 0

    def lag_unset(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.store import lags

        done = on_pool(
            settings,
            lambda p: lags.delete_lag(p, args.vehicle_id, args.pollutant, by=cli_actor()),
        )
        print(f"{args.vehicle_id}\t{args.pollutant}\t{'removed' if done else 'had no lag'}")
        return 0

    def lag_list(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.store import lags

        for r in on_pool(settings, lambda p: lags.list_lags(p, vehicle_id=args.vehicle_id)):
            score = "" if r["score"] is None else f"\tr={r['score']:.3f}"
            window = ""
            if r["method"] == "estimated":
                window = f"\t{r['estimated_from']:%Y-%m-%d %H:%M}..{r['estimated_to']:%H:%M}"
            print(
                f"{r['vehicle_id']}\t{r['pollutant']}\t{r['lag_s']:g} s\t{r['method']}"
                f"{window}{score}\t{r['set_by']}"
            )
        return 0

    def lag_estimate(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.kinds.walkthrough.detection.lag import estimate_lag
        from telemetry.store import lags

        lon, lat = args.source
        if not args.since < args.until:
            raise TelemetryError("--from must be before --to")

        async def work(pool: Any) -> Any:
            drive = await lags.load_drive(
                pool,
                args.vehicle_id,
                args.pollutant,
                since=args.since,
                until=args.until,
                pollutants=POLLUTANTS,
            )
            if drive.ts_us.shape[0] >= 100_000:
                raise TelemetryError("more than 100000 readings in that window; narrow it")
            if drive.ts_us.shape[0] < 3:
                raise TelemetryError(
                    f"{args.vehicle_id} has {drive.ts_us.shape[0]} readings in that window"
                )
            try:
                found = estimate_lag(
                    drive.ts_us, drive.lat, drive.lon, drive.values,
                    source_lat=lat, source_lon=lon, max_lag_s=args.max_lag,
                    step_s=settings.lag_estimate_step_s, sigma_m=args.sigma,
                    max_gap_s=settings.lag_max_gap_s,
                )  # fmt: skip
            except ValueError as exc:
                raise TelemetryError(f"no estimate: {exc}") from exc
            print(
                f"{args.vehicle_id} {args.pollutant}: lag {found.lag_s:.1f} s, correlation "
                f"{found.peak:.3f} (prominence {found.prominence:.3f}, peak width "
                f"{found.width_s:g} s) over {found.samples} readings"
            )
            edge = found.lag_s <= args.max_lag * 0.02 or found.lag_s >= args.max_lag * 0.98
            if found.peak <= 0 or edge:
                raise TelemetryError(
                    "not stored: the best correlation is not positive or lies at the edge of "
                    "0..--max-lag; check the source and the window, or widen --max-lag"
                )
            if args.dry_run:
                return None
            curve = [
                [round(float(x), 3), None if y != y else round(float(y), 4)]
                for x, y in zip(found.lags_s, found.correlation, strict=True)
            ]
            details = {
                "source": {"lon": lon, "lat": lat},
                "sigma_m": args.sigma,
                "step_s": settings.lag_estimate_step_s,
                "max_lag_s": args.max_lag,
                "prominence": found.prominence,
                "width_s": found.width_s,
                "samples": found.samples,
                "curve": curve,
            }
            return await lags.set_lag(
                pool, args.vehicle_id, args.pollutant, round(found.lag_s, 2),
                by=cli_actor(), estimated_from=args.since, estimated_to=args.until,
                score=found.peak, details=details,
            )  # fmt: skip

        row = on_pool(settings, work)
        if row is not None:
            print(f"stored: {row['vehicle_id']}\t{row['pollutant']}\t{row['lag_s']:g} s\testimated")
        return 0

    def calibration_add(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.store import calibrations

        row = on_pool(
            settings,
            lambda p: calibrations.create_period(
                p,
                args.vehicle_id,
                kind=args.kind,
                starts_at=args.since,
                ends_at=args.until,
                pollutant=args.pollutant,
                note=args.note,
                max_duration_s=settings.calibration_max_period_s,
                by=cli_actor(),
            ),
        )
        print(f"calibration {row['id']}: {row['vehicle_id']} {row['pollutant'] or 'all'}")
        return 0

    def calibration_list(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.store import calibrations

        rows = on_pool(settings, lambda p: calibrations.list_periods(p, args.vehicle_id))
        for r in rows:
            print(
                f"{r['id']}\t{r['pollutant'] or 'all'}\t{r['kind']}\t{r['starts_at'].isoformat()}"
                f"\t{r['ends_at'].isoformat()}\t{r['created_by']}\t{r['note'] or ''}"
            )
        return 0

    def calibration_delete(settings: Settings, args: argparse.Namespace) -> int:
        from telemetry.store import calibrations

        on_pool(
            settings,
            lambda p: calibrations.delete_period(p, args.vehicle_id, args.id, by=cli_actor()),
        )
        print(f"removed calibration {args.id} of {args.vehicle_id}")
        return 0

    lag = veh.add_parser("lag", help="analyser lags per pollutant (docs/domain.md)").add_subparsers(
        dest="lag", required=True
    )
    cmd = lag.add_parser("set", help="register a vehicle's lag for a pollutant")
    cmd.add_argument("vehicle_id")
    cmd.add_argument("pollutant", type=pollutant)
    cmd.add_argument("seconds", type=float)
    cmd.set_defaults(func=lag_set)
    cmd = lag.add_parser("unset", help="remove a vehicle's lag for a pollutant")
    cmd.add_argument("vehicle_id")
    cmd.add_argument("pollutant", type=pollutant)
    cmd.set_defaults(func=lag_unset)
    cmd = lag.add_parser("list", help="the lags (of one vehicle, or all)")
    cmd.add_argument("vehicle_id", nargs="?")
    cmd.set_defaults(func=lag_list)
    cmd = lag.add_parser(
        "estimate", help="estimate a lag from recorded drives past a known source, and store it"
    )
    cmd.add_argument("vehicle_id")
    cmd.add_argument("pollutant", type=pollutant)
    cmd.add_argument("--source", type=lon_lat, required=True, metavar="LON,LAT")
    cmd.add_argument("--from", dest="since", type=when, required=True, help="ISO 8601, offset")
    cmd.add_argument("--to", dest="until", type=when, required=True, help="ISO 8601, offset")
    cmd.add_argument(
        "--max-lag", type=float, default=30.0, help="seconds; lags 0..this are tried (30)"
    )
    cmd.add_argument(
        "--sigma", type=float, default=50.0, help="metres, the plume's width at the road (50)"
    )
    cmd.add_argument("--dry-run", action="store_true", help="print the estimate, store nothing")
    cmd.set_defaults(func=lag_estimate)

    cal = veh.add_parser(
        "calibration", help="zero/span calibration periods (docs/domain.md)"
    ).add_subparsers(dest="calibration", required=True)
    cmd = cal.add_parser("add", help="register a calibration period")
    cmd.add_argument("vehicle_id")
    cmd.add_argument("--kind", choices=("zero", "span"), required=True)
    cmd.add_argument("--from", dest="since", type=when, required=True, help="ISO 8601, offset")
    cmd.add_argument("--to", dest="until", type=when, required=True, help="exclusive")
    cmd.add_argument("--pollutant", type=pollutant, help="default: every pollutant")
    cmd.add_argument("--note")
    cmd.set_defaults(func=calibration_add)
    cmd = cal.add_parser("list", help="a vehicle's registered calibration periods")
    cmd.add_argument("vehicle_id")
    cmd.set_defaults(func=calibration_list)
    cmd = cal.add_parser("delete", help="remove a registered calibration period")
    cmd.add_argument("vehicle_id")
    cmd.add_argument("id", type=int)
    cmd.set_defaults(func=calibration_delete)


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
