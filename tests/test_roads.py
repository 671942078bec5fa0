"""Reading road networks (GeoJSON, OSM XML and PBF), splitting them, and the demo network."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path
from typing import Any

import osmium
import pytest

from telemetry.errors import RoadNetworkError
from telemetry.roads import Road, read_geojson, read_osm, split_road, split_roads
from telemetry.roads.importer import read_roads
from telemetry.roads.split import road_length_m

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
DEMO = ROOT / "data" / "roads" / "demo.geojson"

M_PER_DEG_LAT = 6_371_008.8 * math.pi / 180


def line(coords: list[list[float]], properties: dict[str, Any] | None = None, **extra: Any) -> dict:
    return {
        "type": "Feature",
        "properties": properties if properties is not None else {},
        "geometry": {"type": "LineString", "coordinates": coords},
        **extra,
    }


def write(tmp_path: Path, document: Any, name: str = "roads.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


# --- GeoJSON -----------------------------------------------------------------------------------


def test_geojson_lines_become_roads_with_refs_names_and_classes(tmp_path):
    path = write(
        tmp_path,
        collection(
            line(
                [[116.30, 39.99], [116.31, 39.99]], {"name": "成府路", "highway": "primary"}, id="a"
            ),
            line([[116.30, 39.98], [116.30, 39.99]], {"id": 17}),
            line([[116.31, 39.98], [116.31, 39.99]], {"osm_id": "way/5", "highway": "residential"}),
            line([[116.32, 39.98], [116.32, 39.99]]),
        ),
    )

    roads = read_geojson(path)

    assert [r.road_ref for r in roads] == ["a", "17", "way/5", "3"]
    assert roads[0] == Road("a", "成府路", "primary", ((116.30, 39.99), (116.31, 39.99)))
    assert (roads[2].name, roads[2].highway) == (None, "residential")


def test_multilinestring_parts_become_numbered_roads(tmp_path):
    feature = {
        "type": "Feature",
        "id": "ring",
        "properties": {"name": "环路"},
        "geometry": {
            "type": "MultiLineString",
            "coordinates": [[[116.30, 39.99], [116.31, 39.99]], [[116.31, 39.99], [116.31, 39.98]]],
        },
    }

    roads = read_geojson(write(tmp_path, collection(feature)))

    assert [r.road_ref for r in roads] == ["ring/0", "ring/1"]
    assert {r.name for r in roads} == {"环路"}
    assert roads[1].coords == ((116.31, 39.99), (116.31, 39.98))


def test_points_polygons_and_empty_geometries_are_skipped(tmp_path):
    point = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Point", "coordinates": [116.3, 39.9]},
    }
    empty = {"type": "Feature", "properties": None, "geometry": None}
    road = line([[116.30, 39.99], [116.31, 39.99]], id="r")

    roads = read_geojson(write(tmp_path, collection(point, empty, road)))

    assert [r.road_ref for r in roads] == ["r"]


def test_repeated_positions_and_altitudes_are_dropped(tmp_path):
    coords = [[116.30, 39.99, 50.0], [116.30, 39.99, 51.0], [116.31, 39.99], [116.31, 39.99]]

    (road,) = read_geojson(write(tmp_path, collection(line(coords, id="r"))))

    assert road.coords == ((116.30, 39.99), (116.31, 39.99))


@pytest.mark.parametrize(
    ("coords", "message"),
    [
        ([[116.3, 39.99], [181.0, 39.99]], r"feature 1 \(id 'bad'\): position 1: longitude 181.0"),
        ([[116.3, 39.99], [116.3, -91.0]], r"position 1: latitude -91.0 is outside"),
        ([[116.3, 39.99], ["116.3", 39.98]], r"position 1: coordinates must be numbers"),
        ([[116.3, 39.99], [116.3]], r"position 1: expected \[lon, lat\]"),
        ([[116.3, 39.99], [116.3, 39.99]], r"at least 2 distinct positions, found 1"),
        ("116.3,39.99", r"coordinates must be a list"),
    ],
)
def test_malformed_line_is_rejected_naming_the_feature(tmp_path, coords, message):
    path = write(tmp_path, collection(line([[116.3, 39.9], [116.4, 39.9]]), line(coords, id="bad")))

    with pytest.raises(RoadNetworkError, match=message) as caught:
        read_geojson(path)
    assert "feature 1" in str(caught.value)


def test_non_finite_coordinate_is_rejected(tmp_path):
    path = tmp_path / "nan.geojson"
    path.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},'
        ' "geometry": {"type": "LineString", "coordinates": [[116.3, 39.9], [NaN, 39.9]]}}]}'
    )

    with pytest.raises(RoadNetworkError, match="must be finite"):
        read_geojson(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        ('{"type": "FeatureCollection"}', "no 'features' list"),
        ('{"type": "FeatureCollection", "features": [42]}', "feature 0: not a GeoJSON Feature"),
        ('{"type": "FeatureCollection", "features": []}', "no LineString or MultiLineString"),
    ],
)
def test_file_that_is_not_a_line_collection_is_rejected(tmp_path, text, message):
    path = tmp_path / "bad.geojson"
    path.write_text(text)

    with pytest.raises(RoadNetworkError, match=message):
        read_geojson(path)


def test_repeated_road_id_is_rejected(tmp_path):
    path = write(
        tmp_path,
        collection(
            line([[116.3, 39.9], [116.4, 39.9]], id="x"),
            line([[116.3, 39.8], [116.4, 39.8]], id="x"),
        ),
    )

    with pytest.raises(RoadNetworkError, match="feature 1: road id 'x' repeats feature 0"):
        read_geojson(path)


def test_missing_file_is_a_road_network_error(tmp_path):
    with pytest.raises(RoadNetworkError, match="cannot read"):
        read_geojson(tmp_path / "absent.geojson")


# --- OpenStreetMap -----------------------------------------------------------------------------

MINI_ROADS = [
    Road(
        "way/100", "成府路", "residential", ((116.300, 39.99), (116.301, 39.99), (116.302, 39.99))
    ),
    Road(
        "way/101",
        "中关村北大街",
        "primary",
        ((116.301, 39.989), (116.301, 39.99), (116.301, 39.991)),
    ),
    Road("way/106", None, "service", ((116.300, 39.992), (116.302, 39.992))),
]


def test_osm_xml_yields_drivable_ways_with_resolved_nodes():
    # Footway, building and pedestrian-area ways are left out; way 105 has one node in the
    # file and is skipped; way 106 loses its missing middle node.
    assert read_osm(DATA / "mini.osm") == MINI_ROADS


def test_osm_pbf_yields_the_same_roads_as_xml(tmp_path):
    pbf = tmp_path / "mini.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for entity in osmium.FileProcessor(str(DATA / "mini.osm")):
            writer.add(entity)

    assert read_osm(pbf) == MINI_ROADS


def test_osm_without_drivable_ways_is_rejected(tmp_path):
    path = tmp_path / "paths.osm"
    path.write_text(
        '<osm version="0.6"><node id="1" lat="39.9" lon="116.3"/>'
        '<node id="2" lat="39.9" lon="116.4"/>'
        '<way id="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="footway"/></way></osm>'
    )

    with pytest.raises(RoadNetworkError, match="no drivable highway ways"):
        read_osm(path)


@pytest.mark.parametrize(
    ("name", "content"), [("junk.osm", b"not xml"), ("junk.osm.pbf", b"\x00\x01junk")]
)
def test_unreadable_osm_file_is_a_road_network_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(RoadNetworkError, match="cannot read as OpenStreetMap data"):
        read_osm(path)


def test_reader_is_chosen_by_suffix(tmp_path):
    assert read_roads(DATA / "mini.osm") == MINI_ROADS
    assert len(read_roads(DEMO)) == 13
    with pytest.raises(RoadNetworkError, match="unknown road network format"):
        read_roads(tmp_path / "roads.shp")


# --- splitting ---------------------------------------------------------------------------------


def north_road(length_m: float, ref: str = "n") -> Road:
    return Road(
        ref, "北街", "tertiary", ((116.3, 39.99), (116.3, 39.99 + length_m / M_PER_DEG_LAT))
    )


def test_road_is_cut_into_equal_pieces_nearest_the_target_length():
    road = north_road(100.0)

    segments = split_road(road, 30.0)

    assert [s.seq for s in segments] == [0, 1, 2]
    assert [s.length_m for s in segments] == pytest.approx([100 / 3] * 3)
    assert [road_length_m(Road("x", None, None, s.coords)) for s in segments] == pytest.approx(
        [100 / 3] * 3
    )
    assert segments[0].coords[0] == road.coords[0]
    assert segments[-1].coords[-1] == road.coords[-1]
    assert all(a.coords[-1] == b.coords[0] for a, b in itertools.pairwise(segments))
    assert {(s.road_ref, s.name, s.highway) for s in segments} == {("n", "北街", "tertiary")}


@pytest.mark.parametrize(("length_m", "pieces"), [(10.0, 1), (44.0, 1), (46.0, 2), (300.0, 10)])
def test_piece_count_rounds_length_over_target(length_m, pieces):
    assert len(split_road(north_road(length_m), 30.0)) == pieces


def l_road() -> Road:
    """60 m east with a vertex at 31 m, then 60 m north."""
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(39.99))
    corner = (116.3 + 60 / m_per_deg_lon, 39.99)
    return Road(
        "l",
        None,
        None,
        (
            (116.3, 39.99),
            (116.3 + 31 / m_per_deg_lon, 39.99),
            corner,
            (corner[0], 39.99 + 60 / M_PER_DEG_LAT),
        ),
    )


def test_interior_vertices_are_kept_in_their_piece():
    road = l_road()

    segments = split_road(road, 40.0)  # cuts at 40 and 80 m

    assert [len(s.coords) for s in segments] == [3, 3, 2]
    assert segments[0].coords[1] == road.coords[1]
    assert segments[1].coords[1] == road.coords[2]  # the corner
    assert sum(s.length_m for s in segments) == pytest.approx(road_length_m(road))


def test_vertex_on_a_cut_point_is_not_repeated():
    road = l_road()

    segments = split_road(road, 30.0)  # cuts at 30, 60 (the corner) and 90 m

    assert [len(s.coords) for s in segments] == [2, 3, 2, 2]
    assert segments[1].coords[-1] == pytest.approx(road.coords[2], abs=1e-12)
    assert segments[2].coords[0] == segments[1].coords[-1]


def test_split_roads_concatenates_in_road_order():
    segments = split_roads([north_road(60.0, "a"), north_road(30.0, "b")], 30.0)

    assert [(s.road_ref, s.seq) for s in segments] == [("a", 0), ("a", 1), ("b", 0)]


def test_segment_length_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        split_road(north_road(100.0), 0.0)


# --- the demo network --------------------------------------------------------------------------


def test_demo_network_is_a_connected_district_of_the_stated_size():
    roads = read_geojson(DEMO)

    assert len(roads) == 13
    assert 15.0 <= sum(map(road_length_m, roads)) / 1000 <= 25.0
    assert all(r.name and r.highway for r in roads)
    # Roads meet only at shared vertices: joining roads that share one connects all of them.
    vertices = [set(r.coords) for r in roads]
    reached, frontier = {0}, [0]
    while frontier:
        here = frontier.pop()
        for other in range(len(roads)):
            if other not in reached and vertices[here] & vertices[other]:
                reached.add(other)
                frontier.append(other)
    assert reached == set(range(len(roads)))
    crossings = {v for i, a in enumerate(vertices) for b in vertices[i + 1 :] for v in a & b}
    assert len(crossings) == 32  # 6 x 6 grid corners less 2 beyond each of the short streets


def test_demo_file_is_what_the_script_generates():
    spec = importlib.util.spec_from_file_location(
        "make_demo_roads", ROOT / "scripts" / "make_demo_roads.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    assert DEMO.read_text(encoding="utf-8") == script.render(script.build())
