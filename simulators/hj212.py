"""``telemetry simulate --hj212-tcp HOST:PORT``: the walk-through fleet as HJ 212 data
loggers, one TCP connection per vehicle, one real-time (CN 2011) packet per reading, replies
(9014) counted (docs/adr/0010-hj212.md)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg

from simulators.accounts import register_vehicles
from simulators.fleet import Fleet, Reading
from telemetry.broker import repository
from telemetry.hj212.factors import CHANNELS
from telemetry.hj212.framing import Frame, Framer
from telemetry.hj212.packet import build_packet
from telemetry.hj212.station import Station
from telemetry.kinds.contract import Kind
from telemetry.settings import Settings

__all__ = ["Analyser", "drive_hj212", "mn_of", "packet", "register_analysers"]

log = logging.getLogger(__name__)

_CST = timezone(timedelta(hours=8))
#: Sent in each channel's own unit, and registered so: nothing to convert.
UNITS_SENT = {code: unit for code, (_, unit) in CHANNELS.items() if "/m3" in unit}


def mn_of(vehicle_id: str) -> str:
    """The simulated analyser's MN: the vehicle id where it can be one, else a digest."""
    if re.fullmatch(r"[0-9A-Za-z_-]{1,24}", vehicle_id):
        return vehicle_id
    return hashlib.sha1(vehicle_id.encode()).hexdigest()[:24].upper()


def packet(mn: str, pw: str, reading: Reading) -> bytes:
    """One reading as a CN 2011 packet asking for a reply (Flag=5)."""
    ts = reading["ts"]
    moment = (
        datetime.fromtimestamp(ts / 1000, UTC)
        if isinstance(ts, int)
        else datetime.fromisoformat(ts)
    ).astimezone(_CST)
    flag = reading.get("flag", "N")
    items = [f"DataTime={moment:%Y%m%d%H%M%S}"]
    for code, (channel, _) in CHANNELS.items():
        value = reading.get(channel)
        if value is not None:
            items.append(f"{code}-Rtd={value},{code}-Flag={flag}")
    items += [f"Lng={reading['lon']}", f"Lat={reading['lat']}"]
    qn = f"{moment:%Y%m%d%H%M%S}{moment.microsecond // 1000:03d}"
    return build_packet(f"QN={qn};ST=22;CN=2011;PW={pw};MN={mn};Flag=5;CP=&&{';'.join(items)}&&")


async def register_analysers(settings: Settings, vehicle_ids: Sequence[str]) -> dict[str, Station]:
    """Register the simulated vehicles (as ``telemetry simulate`` does) with an analyser each:
    MN from the id, a new PW per run. Returns {vehicle id: station}."""
    await register_vehicles(settings, [(v, Kind.WALKTHROUGH) for v in vehicle_ids])
    stations = {
        v: Station(v, Kind.WALKTHROUGH.value, mn_of(v), f"{secrets.randbelow(10**6):06d}",
                   units=UNITS_SENT)
        for v in vehicle_ids
    }  # fmt: skip
    conn = await asyncpg.connect(settings.database_url)
    try:
        for station in stations.values():
            await repository.set_hj212(conn, station)
    finally:
        await conn.close()
    return stations


class Analyser:
    """One data logger's connection: sends packets, counts the data replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = self.replies = 0
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        framer = Framer()
        while data := await self.reader.read(4096):
            for piece in framer.feed(data):
                if isinstance(piece, Frame) and b"CN=9014" in piece.segment:
                    self.replies += 1

    def send(self, packets: Sequence[bytes]) -> None:
        self.writer.write(b"".join(packets))
        self.sent += len(packets)

    async def close(self, wait_s: float = 5.0) -> None:
        deadline = time.monotonic() + wait_s
        while self.replies < self.sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self.writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task


async def drive_hj212(
    fleet: Fleet,
    stations: Mapping[str, Station],
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    duration_s: float | None = None,
) -> tuple[int, int]:
    """Tick the fleet on whole seconds and send each vehicle's readings over its own
    connection until ``stop`` or ``duration_s``; returns (packets sent, replies received)."""
    analysers: dict[str, Analyser] = {}
    for v in fleet.vehicle_ids:
        reader, writer = await asyncio.open_connection(host, port)
        analysers[v] = Analyser(reader, writer)
    next_s = float(int(time.time()) + 1)
    end_s = None if duration_s is None else time.time() + duration_s
    while not stop.is_set() and (end_s is None or next_s <= end_s):
        try:
            async with asyncio.timeout(max(0.0, next_s - time.time())):
                await stop.wait()
            break
        except TimeoutError:
            pass
        for vehicle_id, payload in fleet.advance(datetime.fromtimestamp(next_s, UTC)):
            s = stations[vehicle_id]
            readings: list[Any] = payload if isinstance(payload, list) else [payload]
            assert s.pw is not None
            analysers[vehicle_id].send([packet(s.mn, s.pw, r) for r in readings])
        next_s += 1.0
    await asyncio.gather(*(a.close() for a in analysers.values()))
    return sum(a.sent for a in analysers.values()), sum(a.replies for a in analysers.values())
