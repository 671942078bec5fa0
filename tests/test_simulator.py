"""The walk-through simulator: street graph, seeded fleet, plumes, gaps, and MQTT publishing."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pytest
from gmqtt import Client

from simulators.accounts import fleet_publishers
from simulators.fleet import BACKGROUND, Fleet
from simulators.network import RoadNetwork, network_from_geojson
from simulators.plume import Plumes, Source, parse_source
from simulators.publisher import Publisher, drive_fleet, encode, topic_for
from telemetry.errors import RoadNetworkError, ValidationError
from telemetry.kinds.contract import Kind
from telemetry.kinds.walkthrough.record import WalkthroughReading
from telemetry.settings import MqttEndpoint, Settings

LON0, LAT0, STEP = 116.30, 39.98, 0.004  # grid spacing ≈ 340 m east-west, 445 m north-south
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def grid_geojson(n: int = 4) -> dict[str, Any]:
    """n east-west and n north-south streets crossing at shared coordinates."""
    features = []
    for i in range(n):
        ew = [[LON0 + j * STEP, LAT0 + i * STEP] for j in range(n)]
        ns = [[LON0 + i * STEP, LAT0 + j * STEP] for j in range(n)]
        for name, coords in ((f"EW {i}", ew), (f"NS {i}", ns)):
            features.append(
                {
                    "type": "Feature",
                    "properties": {"name": name},
                    "geometry": {"type": "LineString", "coordinates": coords},
                }
            )
    return {"type": "FeatureCollection", "features": features}


@pytest.fixture(scope="module")
def grid() -> RoadNetwork:
    return network_from_geojson(grid_geojson())


def ticks(fleet: Fleet, seconds: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k in range(seconds):
        out.extend(fleet.advance(T0 + timedelta(seconds=k)))
    return out


def metres_from(network: RoadNetwork, lon: float, lat: float, readings: list[dict[str, Any]]):
    x, y = network.to_xy(
        np.array([r["lon"] for r in readings]), np.array([r["lat"] for r in readings])
    )
    sx, sy = network.to_xy(np.array([lon]), np.array([lat]))
    return np.hypot(x - sx, y - sy)


def test_streets_sharing_a_coordinate_meet_at_one_node_and_vehicles_avoid_u_turns() -> None:
    network = network_from_geojson(grid_geojson(3))
    middle = network.node_xy.mean(axis=0)
    centre = [n for n, xy in enumerate(network.node_xy) if np.hypot(*(xy - middle)) < 1.0]
    assert len(centre) == 1
    leaving = network.out_edges[centre[0]]
    assert len(leaving) == 4
    assert {network.street_names[network.edge_street[e]] for e in leaving} == {"EW 1", "NS 1"}

    arriving = network.reverse(leaving[0])
    rng = np.random.default_rng(0)
    choices = {network.next_edge(arriving, rng) for _ in range(50)}
    assert leaving[0] not in choices  # that would be driving back the way it came
    assert choices == set(leaving) - {leaving[0]}


def test_dead_end_forces_a_u_turn() -> None:
    line = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": {
            "type": "LineString", "coordinates": [[LON0, LAT0], [LON0 + STEP, LAT0]]}}],
    }  # fmt: skip
    network = network_from_geojson(line)
    assert network.edge_count == 2
    assert network.next_edge(0, np.random.default_rng(0)) == 1


def test_road_file_without_lines_is_rejected() -> None:
    with pytest.raises(RoadNetworkError):
        network_from_geojson({"type": "FeatureCollection", "features": []})
    with pytest.raises(RoadNetworkError):
        network_from_geojson({"type": "Feature"})


def test_same_seed_gives_identical_readings(grid: RoadNetwork) -> None:
    sources = [Source(LON0 + STEP, LAT0 + 0.5 * STEP, "pm25", 120.0)]

    def run(seed: int) -> list[tuple[str, Any]]:
        fleet = Fleet(grid, Plumes(sources, grid), vehicles=4, seed=seed, gap_every_s=20,
                      gap_length_s=5)  # fmt: skip
        return ticks(fleet, 90)

    first, again, other = run(7), run(7), run(8)
    assert len(first) > 200
    assert encode([r for _, r in first]) == encode([r for _, r in again])
    assert encode([r for _, r in first]) != encode([r for _, r in other])


def test_readings_near_a_source_exceed_those_far_away(grid: RoadNetwork) -> None:
    source = Source(LON0 + STEP, LAT0 + 1.5 * STEP, "pm25", 120.0)  # mid-block on "NS 1"
    fleet = Fleet(grid, Plumes([source], grid), vehicles=12, seed=3)
    readings = [r for _, r in ticks(fleet, 900)]
    distance = metres_from(grid, source.lon, source.lat, readings)
    pm25 = np.array([r["pm25"] for r in readings])

    near, far = pm25[distance < 30.0], pm25[distance > 300.0]
    assert near.size >= 5
    assert far.size >= 1000
    # GB 3095-2026 transitional Grade II: PM2.5 60 µg/m³ (24 h).
    assert near.min() > 60.0
    assert near.mean() > 3.0 * far.mean()
    assert abs(np.median(far) - BACKGROUND["pm25"]) < 5.0


def test_readings_follow_the_contract_with_plausible_values(grid: RoadNetwork) -> None:
    fleet = Fleet(grid, Plumes([], grid), vehicles=6, seed=5)
    readings = [r for _, r in ticks(fleet, 600)]
    decoded = msgspec.json.decode(encode(readings), type=list[WalkthroughReading])
    assert len(decoded) == 6 * 600

    speed = np.array([r.speed_kmh for r in decoded])
    assert speed.max() <= 40.0
    assert speed.min() >= 10.0
    assert (speed < 20.0).any()  # vehicles slow down for turns
    heading = np.array([r.heading_deg for r in decoded])
    assert ((heading >= 0.0) & (heading < 360.0)).all()
    assert {r.flag for r in decoded} <= {"N", "C"}

    # positions stay on the streets: within GPS noise of a grid line
    x, y = grid.to_xy(np.array([r.lon for r in decoded]), np.array([r.lat for r in decoded]))
    gx, gy = grid.to_xy(LON0 + STEP * np.arange(4), LAT0 + STEP * np.arange(4))
    off_street = np.minimum(
        np.abs(x[:, None] - gx[None, :]).min(axis=1), np.abs(y[:, None] - gy[None, :]).min(axis=1)
    )
    assert off_street.max() < 20.0


def test_gap_flushes_buffered_readings_as_one_array_with_increasing_timestamps(
    grid: RoadNetwork,
) -> None:
    fleet = Fleet(grid, Plumes([], grid), vehicles=3, seed=2, gap_every_s=30, gap_length_s=8)
    per_vehicle: dict[str, list[str]] = {v: [] for v in fleet.vehicle_ids}
    flushes = []
    for vehicle_id, payload in ticks(fleet, 120):
        if isinstance(payload, list):
            flushes.append(payload)
            per_vehicle[vehicle_id].extend(r["ts"] for r in payload)
        else:
            per_vehicle[vehicle_id].append(payload["ts"])

    assert len(flushes) >= 3 * 3
    for flush in flushes:
        stamps = [datetime.fromisoformat(r["ts"]) for r in flush]
        assert len(stamps) >= 2
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(stamps))
    for stamps in per_vehicle.values():  # nothing lost, nothing repeated, in order
        seconds = [datetime.fromisoformat(s) for s in stamps]
        assert seconds == [T0 + timedelta(seconds=k) for k in range(len(seconds))]
        assert len(seconds) >= 120 - 8  # at most one gap still buffered


@pytest.mark.parametrize(
    "text", ["116.3,39.9,pm25", "116.3,39.9,lead,10", "x,39.9,pm25,10", "116.3,39.9,no2,-1"]
)
def test_bad_source_option_is_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_source(text)


def test_source_option_parses() -> None:
    assert parse_source(" 116.31, 39.99 ,no2,300") == Source(116.31, 39.99, "no2", 300.0)


class Subscriber:
    """A gmqtt client collecting everything under ``telemetry/#`` with its QoS."""

    def __init__(self, *, clean_session: bool = True) -> None:
        self.client = Client(
            f"test-sub-{id(self)}", clean_session=clean_session, session_expiry_interval=600
        )
        self.client.set_config({"reconnect_delay": 0.2})
        self.received: list[tuple[str, bytes, int]] = []
        self.arrived = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.received.append((topic, payload, qos))
        self.arrived.set()
        return 0

    async def start(self, endpoint: MqttEndpoint) -> None:
        if endpoint.username is not None:
            self.client.set_auth_credentials(endpoint.username, endpoint.password)
        await self.client.connect(endpoint.host, endpoint.port)
        self.client.subscribe("telemetry/#", qos=1)
        await asyncio.wait_for(self.subscribed.wait(), 5)

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def test_published_readings_arrive_at_a_subscriber_as_contract_json(
    grid: RoadNetwork, broker: Any
) -> None:
    endpoint = MqttEndpoint(broker.url)
    subscriber = Subscriber()
    await subscriber.start(endpoint)
    fleet = Fleet(grid, Plumes([], grid), vehicles=3, seed=4, gap_every_s=10, gap_length_s=3,
                  prefix="pub-")  # fmt: skip
    sent = [(topic_for("telemetry", v).encode(), encode(p)) for v, p in ticks(fleet, 25)]
    try:
        async with Publisher(endpoint, "test-publisher") as publisher:
            await publisher.publish(sent)
            assert await publisher.drain(timeout_s=10)
            assert publisher.acknowledged == publisher.published == len(sent)
        await subscriber.wait_for(len(sent))
    finally:
        await subscriber.client.disconnect()

    assert sorted((t.encode(), p) for t, p, _ in subscriber.received) == sorted(sent)
    assert {qos for _, _, qos in subscriber.received} == {1}
    arrays = 0
    for topic, payload, _ in subscriber.received:
        assert topic.startswith("telemetry/walkthrough/pub-")
        body = msgspec.json.decode(payload)
        items = body if isinstance(body, list) else [body]
        arrays += isinstance(body, list)
        for item in msgspec.convert(items, type=list[WalkthroughReading]):
            assert isinstance(item.ts, datetime)
            assert item.ts.utcoffset() == timedelta(0)
            assert math.isfinite(item.pm25 or math.nan)
    assert arrays >= 3


async def test_fleet_driven_in_real_time_publishes_until_stopped(
    grid: RoadNetwork, broker: Any
) -> None:
    endpoint = MqttEndpoint(broker.url)
    subscriber = Subscriber()
    await subscriber.start(endpoint)
    fleet = Fleet(grid, Plumes([], grid), vehicles=2, seed=6, prefix="live-")
    stop = asyncio.Event()
    # As `telemetry simulate` does: each vehicle registered, and publishing as itself.
    settings = Settings(database_url=broker.database_url, mqtt_url=broker.plain_url)
    try:
        async with fleet_publishers(settings, fleet.vehicle_ids, Kind.WALKTHROUGH) as publishers:
            driving = asyncio.create_task(drive_fleet(fleet, publishers, "telemetry", stop))
            await subscriber.wait_for(2)
            stop.set()
            readings = await asyncio.wait_for(driving, 15)
            acknowledged = sum(p.acknowledged for p in publishers.values())
            assert acknowledged == sum(p.published for p in publishers.values()) == readings
        await subscriber.wait_for(readings)
    finally:
        await subscriber.client.disconnect()
    assert {t for t, _, _ in subscriber.received} == {
        "telemetry/walkthrough/live-001",
        "telemetry/walkthrough/live-002",
    }


async def test_publisher_resends_what_a_restarted_broker_never_acknowledged(
    grid: RoadNetwork, tmp_path: Any, broker_database: str
) -> None:
    from conftest import free_port, start_broker

    port = free_port()
    broker = start_broker(tmp_path / "broker", port, database_url=broker_database)
    fleet = Fleet(grid, Plumes([], grid), vehicles=2, seed=9, prefix="restart-")
    before = [(topic_for("telemetry", v).encode(), encode(p)) for v, p in ticks(fleet, 5)]
    after = [(topic_for("telemetry", v).encode(), encode(p)) for v, p in ticks(fleet, 5)]
    try:
        async with Publisher(
            MqttEndpoint(broker.url), "test-restart", reconnect_delay_s=0.2
        ) as pub:
            await pub.publish(before)
            assert await pub.drain(timeout_s=10)
            broker.process.terminate()
            broker.process.wait(timeout=10)

            sending = asyncio.create_task(pub.publish(after))
            await asyncio.sleep(0.5)  # publishing meets the closed socket and failed reconnects
            assert pub.acknowledged == len(before)
            broker = start_broker(tmp_path / "broker", port, database_url=broker_database)
            await asyncio.wait_for(sending, 15)
            assert await pub.drain(timeout_s=10)
            # Every PUBACK came from a broker: nothing was dropped with the lost session.
            assert pub.acknowledged == pub.published == len(before) + len(after)
            assert pub.inflight == 0
    finally:
        broker.process.terminate()
        broker.process.wait(timeout=10)
