"""road_segments against the real database: idempotent import, geometry, per-segment detail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from telemetry.errors import RoadNetworkError
from telemetry.roads import Segment
from telemetry.roads.importer import ImportReport, import_roads
from telemetry.roads.repository import (
    count_segments,
    fetch_segment,
    load_segment_geometries,
    upsert_segments,
)
from telemetry.settings import Settings

DEMO = Path(__file__).resolve().parent.parent / "data" / "roads" / "demo.geojson"


def segment(road_ref: str, seq: int, name: str | None = "成府路", x0: float = 116.300) -> Segment:
    coords = (
        (x0 + seq * 0.0004, 39.99),
        (x0 + seq * 0.0004 + 0.0002, 39.9901),
        (x0 + (seq + 1) * 0.0004, 39.99),
    )
    return Segment(road_ref, seq, name, "primary", coords, 34.5)


async def ids_by_key(pool: asyncpg.Pool, source: str) -> dict[tuple[str, int], int]:
    rows = await pool.fetch("SELECT road_ref, seq, id FROM road_segments WHERE source = $1", source)
    return {(r["road_ref"], r["seq"]): r["id"] for r in rows}


async def test_reimport_keeps_ids_updates_attributes_and_drops_vanished_segments(pool):
    first = [segment("a", 0), segment("a", 1), segment("a", 2), segment("b", 0)]
    async with pool.acquire() as conn, conn.transaction():
        assert await upsert_segments(conn, "city.geojson", first) == 4
        assert await upsert_segments(conn, "other.osm", [segment("a", 0)]) == 1
    before = await ids_by_key(pool, "city.geojson")

    # Road "a" got shorter and renamed, road "b" is gone, road "c" is new.
    second = [segment("a", 0, "新名"), segment("a", 1, "新名"), segment("c", 0)]
    async with pool.acquire() as conn, conn.transaction():
        assert await upsert_segments(conn, "city.geojson", second) == 3
    after = await ids_by_key(pool, "city.geojson")

    assert set(after) == {("a", 0), ("a", 1), ("c", 0)}
    assert after[("a", 0)] == before[("a", 0)]
    assert after[("a", 1)] == before[("a", 1)]
    assert after[("c", 0)] not in before.values()
    names = await pool.fetch(
        "SELECT DISTINCT name FROM road_segments WHERE source = 'city.geojson' AND road_ref = 'a'"
    )
    assert [r["name"] for r in names] == ["新名"]
    assert await count_segments(pool) == 4  # the other source is untouched


async def test_stored_row_holds_bounding_box_and_geojson_coordinates(pool):
    seg = segment("a", 1)
    async with pool.acquire() as conn, conn.transaction():
        await upsert_segments(conn, "s", [seg])

    row = await pool.fetchrow(
        "SELECT coords, min_lon, min_lat, max_lon, max_lat, length_m FROM road_segments"
    )

    assert row["coords"] == [list(p) for p in seg.coords]
    assert (row["min_lon"], row["min_lat"]) == (116.3004, 39.99)
    assert (row["max_lon"], row["max_lat"]) == (116.3008, 39.9901)
    assert row["length_m"] == 34.5


async def test_repeated_segment_key_is_rejected_before_writing(pool):
    async with pool.acquire() as conn:
        with pytest.raises(RoadNetworkError, match="appears twice"):
            await upsert_segments(conn, "s", [segment("a", 0), segment("a", 0, "again")])

    assert await count_segments(pool) == 0


async def test_failed_import_transaction_leaves_the_previous_import(pool):
    async with pool.acquire() as conn, conn.transaction():
        await upsert_segments(conn, "s", [segment("a", 0), segment("b", 0)])
    before = await ids_by_key(pool, "s")

    bad = Segment(
        "c", 0, None, None, ((116.3, 39.99), (116.31, 39.99)), 0.0
    )  # violates length_m > 0
    with pytest.raises(asyncpg.CheckViolationError):
        async with pool.acquire() as conn, conn.transaction():
            await upsert_segments(conn, "s", [segment("a", 0), bad])

    assert await ids_by_key(pool, "s") == before


async def test_geometries_load_as_id_and_positions_in_id_order(pool):
    segments = [segment("a", 0), segment("a", 1)]
    async with pool.acquire() as conn, conn.transaction():
        await upsert_segments(conn, "s", segments)
    ids = await ids_by_key(pool, "s")

    geometries = await load_segment_geometries(pool)

    assert geometries == [
        (ids[("a", 0)], list(segments[0].coords)),
        (ids[("a", 1)], list(segments[1].coords)),
    ]


async def test_empty_network_loads_no_geometries(pool):
    assert await load_segment_geometries(pool) == []
    assert await count_segments(pool) == 0


async def insert_reading(pool, segment_id, ts, pm25, flag="N", vehicle="wt-01"):
    await pool.execute(
        "INSERT INTO walkthrough_readings"
        " (vehicle_id, ts, received_at, lat, lon, pm25, no2, flag, segment_id)"
        " VALUES ($1, $2, $2, 39.99, 116.3005, $3, 40, $4, $5)",
        vehicle,
        ts,
        pm25,
        flag,
        segment_id,
    )


async def test_segment_detail_has_geometry_and_hourly_statistics_newest_first(pool):
    seg = segment("a", 0)
    async with pool.acquire() as conn, conn.transaction():
        await upsert_segments(conn, "city.geojson", [seg, segment("a", 1)])
    ids = await ids_by_key(pool, "city.geojson")
    sid, neighbour = ids[("a", 0)], ids[("a", 1)]
    hour = datetime(2024, 6, 1, 8, tzinfo=UTC)
    await insert_reading(pool, sid, hour + timedelta(minutes=5), 30.0)
    await insert_reading(pool, sid, hour + timedelta(minutes=6), 50.0)
    await insert_reading(pool, sid, hour + timedelta(minutes=7), 999.0, flag="D")  # not valid data
    await insert_reading(pool, sid, hour + timedelta(hours=1, minutes=1), 80.0)
    await insert_reading(pool, sid, hour - timedelta(hours=3), 10.0)  # before `since`
    await insert_reading(pool, neighbour, hour + timedelta(minutes=5), 500.0, vehicle="wt-02")

    detail = await fetch_segment(pool, sid, since=hour)

    assert detail is not None
    assert {
        k: detail[k] for k in ("id", "source", "road_ref", "seq", "name", "highway", "length_m")
    } == {
        "id": sid,
        "source": "city.geojson",
        "road_ref": "a",
        "seq": 0,
        "name": "成府路",
        "highway": "primary",
        "length_m": 34.5,
    }
    assert detail["geometry"] == {
        "type": "LineString",
        "coordinates": [list(p) for p in seg.coords],
    }
    hourly = detail["hourly"]
    assert [(h["bucket"], h["readings"]) for h in hourly] == [
        (hour + timedelta(hours=1), 1),
        (hour, 2),
    ]
    assert hourly[1]["pm25_avg"] == pytest.approx(40.0)
    assert hourly[1]["pm25_max"] == pytest.approx(50.0)
    assert hourly[1]["no2_avg"] == pytest.approx(40.0)
    assert hourly[1]["co_avg"] is None
    assert hourly[1]["segment_id"] == sid


async def test_segment_without_readings_has_no_hourly_rows(pool):
    async with pool.acquire() as conn, conn.transaction():
        await upsert_segments(conn, "s", [segment("a", 0)])
    (sid,) = (await ids_by_key(pool, "s")).values()

    detail = await fetch_segment(pool, sid, since=datetime(2024, 1, 1, tzinfo=UTC))

    assert detail is not None
    assert detail["hourly"] == []


async def test_missing_segment_is_none(pool):
    assert await fetch_segment(pool, 424242, since=datetime(2024, 1, 1, tzinfo=UTC)) is None


async def test_importing_the_demo_network_twice_keeps_segment_ids(pool, database_url):
    settings = Settings(database_url=database_url)

    first = await import_roads(settings, DEMO, segment_length_m=30.0)
    ids_first = await ids_by_key(pool, "demo.geojson")
    second = await import_roads(settings, DEMO, segment_length_m=30.0)

    assert first == second
    assert isinstance(first, ImportReport)
    assert (first.source, first.roads) == ("demo.geojson", 13)
    assert first.segments == len(ids_first) == await count_segments(pool)
    assert 15.0 <= first.total_length_km <= 25.0
    assert str(first).startswith(f"imported 13 roads as {first.segments} segments (")
    assert await ids_by_key(pool, "demo.geojson") == ids_first


async def test_import_under_a_named_source_with_longer_segments(pool, database_url):
    settings = Settings(database_url=database_url)

    short = await import_roads(settings, DEMO, source="haidian", segment_length_m=30.0)
    long = await import_roads(settings, DEMO, source="haidian", segment_length_m=100.0)

    assert long.segments < short.segments
    assert await count_segments(pool) == long.segments
    assert long.total_length_km == pytest.approx(short.total_length_km)


async def test_import_of_an_unknown_format_fails_before_touching_the_database(
    tmp_path, pool, database_url
):
    path = tmp_path / "roads.csv"
    path.write_text("lon,lat\n")

    with pytest.raises(RoadNetworkError, match="unknown road network format"):
        await import_roads(Settings(database_url=database_url), path, segment_length_m=30.0)
    assert await count_segments(pool) == 0
