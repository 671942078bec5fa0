"""Ingest benchmark: one `telemetry ingest` process, single-reading QoS 1 messages.

Starts the project's own Mosquitto (deploy/mosquitto/mosquitto.conf) on a free loopback port,
creates a scratch database, imports the demo road network, runs one ingest worker process and
`telemetry simulate --load` against it, prints the load report with the CPU each reading cost
the ingest process and the broker, and cleans everything up.

    .venv/bin/python -m benchmarks.ingest --rate 20000 --count 200000

Figures depend on the machine and on what else runs on it; the closing notes of the issues
quote them with the command used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def _start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf += f"\npersistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    (workdir / "mosquitto.conf").write_text(conf)
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(workdir / "mosquitto.conf")])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


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
    broker, port = _start_broker(workdir)
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_MQTT_URL": f"mqtt://127.0.0.1:{port}",
        "TELEMETRY_MQTT_CLIENT_ID": "bench-ingest",
    }
    telemetry = [sys.executable, "-m", "telemetry"]
    ingest = None
    try:
        asyncio.run(_prepare(database_url))
        subprocess.run(
            [*telemetry, "roads", "import", str(ROOT / "data/roads/demo.geojson")],
            env=env,
            check=True,
        )
        with (workdir / "ingest.log").open("wb") as log:
            ingest = subprocess.Popen([*telemetry, "ingest"], env=env, stdout=log, stderr=log)
        time.sleep(2.0)  # let the worker connect and subscribe before the stream starts
        print(f"ingest: 1 process; broker: project Mosquitto on port {port}; database: {name}")
        cpu_before = (_cpu_s(ingest.pid), _cpu_s(broker.pid))
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
            _cpu_s(p) - b for p, b in zip((ingest.pid, broker.pid), cpu_before, strict=True)
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
        broker.terminate()
        broker.wait(timeout=10)
        asyncio.run(_drop(args.admin_url, name))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
