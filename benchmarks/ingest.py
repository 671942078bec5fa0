"""Ingest benchmark: one `telemetry ingest` process, single-reading QoS 1 messages.

Creates a scratch database, starts the project's broker (`telemetry broker run`, authentication
on) on a free loopback port, imports the demo road network, runs one ingest worker process and
`telemetry simulate --load` against it (each simulated vehicle connects with its own account),
prints the load report with the CPU each reading cost the ingest process and the broker, and
cleans everything up.

    .venv/bin/python -m benchmarks.ingest --rate 20000 --count 200000

Figures depend on the machine and on what else runs on it; the closing notes of the issues
quote them with the command used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from telemetry.db import ensure_database
from telemetry.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_broker(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int, int]:
    """`telemetry broker run` on a free loopback port: (runner, port, Mosquitto's pid)."""
    port = _free_port()
    state = workdir / "broker"
    with (workdir / "broker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry", "broker", "run", "--port", str(port),
             "--state-dir", str(state)],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, int((state / "mosquitto.pid").read_text())
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the broker did not start; see {workdir}/broker.log")


async def _prepare(url: str) -> None:
    await ensure_database(url)
    await migrate(url)


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000, help="target readings/s")
    parser.add_argument("--count", type=int, default=200_000, help="readings to publish")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--vehicles", type=int, default=500)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "TELEMETRY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()

    name = f"telemetry_bench_{uuid.uuid4().hex[:8]}"
    database_url = urlunsplit(urlsplit(args.admin_url)._replace(path=f"/{name}"))
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_MQTT_USERNAME": "bench-ingest",
        "TELEMETRY_MQTT_PASSWORD": secrets.token_urlsafe(24),
        "TELEMETRY_MQTT_CLIENT_ID": "bench-ingest",
    }
    env.pop("TELEMETRY_MQTT_URL", None)
    telemetry = [sys.executable, "-m", "telemetry"]
    ingest = broker = None
    try:
        asyncio.run(_prepare(database_url))
        broker, port, broker_pid = _start_broker(workdir, env)
        env["TELEMETRY_MQTT_URL"] = f"mqtt://127.0.0.1:{port}"
        subprocess.run(
            [*telemetry, "roads", "import", str(ROOT / "data/roads/demo.geojson")],
            env=env,
            check=True,
        )
        with (workdir / "ingest.log").open("wb") as log:
            ingest = subprocess.Popen([*telemetry, "ingest"], env=env, stdout=log, stderr=log)
        time.sleep(2.0)  # let the worker connect and subscribe before the stream starts
        print(f"ingest: 1 process; broker: project Mosquitto on port {port}; database: {name}")
        cpu_before = (_cpu_s(ingest.pid), _cpu_s(broker_pid))
        result = subprocess.run(
            [
                *telemetry,
                "simulate",
                "--load",
                "--rate",
                str(args.rate),
                "--count",
                str(args.count),
                "--publishers",
                str(args.publishers),
                "--vehicles",
                str(args.vehicles),
            ],
            env=env,
        )
        ingest_s, broker_s = (
            _cpu_s(p) - b for p, b in zip((ingest.pid, broker_pid), cpu_before, strict=True)
        )
        us = 1e6 / args.count
        print(
            f"  CPU per reading         ingest {ingest_s * us:.1f} µs (total {ingest_s:.2f} s), "
            f"broker {broker_s * us:.1f} µs"
        )
        return result.returncode
    finally:
        if ingest is not None:
            ingest.terminate()
            ingest.wait(timeout=30)
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)
        asyncio.run(_drop(args.admin_url, name))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
