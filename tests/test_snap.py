"""SegmentIndex: nearest segment within tolerance, with the heading rule at intersections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from telemetry.roads.snap import SegmentIndex

LAT0 = 39.99
M_PER_DEG_LAT = 6_371_008.8 * math.pi / 180
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAT0))

# A crossroads: segment 10 runs east-west, segment 20 north-south, crossing at (116.3005, 39.99).
EAST_WEST = (10, [(116.3000, 39.9900), (116.3010, 39.9900)])
NORTH_SOUTH = (20, [(116.3005, 39.9895), (116.3005, 39.9905)])


@pytest.fixture
def crossroads() -> SegmentIndex:
    return SegmentIndex.build([EAST_WEST, NORTH_SOUTH])


def snap(index: SegmentIndex, points, headings=None, tolerance_m=30.0):
    lon = np.array([p[0] for p in points], dtype=np.float64)
    lat = np.array([p[1] for p in points], dtype=np.float64)
    heading = None if headings is None else np.array(headings, dtype=np.float64)
    return index.snap(lon, lat, heading, tolerance_m)


def test_point_beside_a_street_snaps_with_perpendicular_distance(crossroads):
    ids, dist = snap(crossroads, [(116.3002, 39.9901)])

    assert ids.tolist() == [10]
    assert dist[0] == pytest.approx(1e-4 * M_PER_DEG_LAT, rel=1e-3)


def test_point_past_the_end_of_a_segment_measures_to_the_end(crossroads):
    ids, dist = snap(crossroads, [(116.3012, 39.9900)])

    assert ids.tolist() == [10]
    assert dist[0] == pytest.approx(2e-4 * M_PER_DEG_LON, rel=1e-3)


def test_point_beyond_tolerance_snaps_to_nothing(crossroads):
    # 44 m north of the east-west street and 43 m west of the north-south one.
    ids, dist = snap(crossroads, [(116.3000, 39.9904)])

    assert ids.tolist() == [-1]
    assert np.isnan(dist[0])
    assert ids.dtype == np.int64
    assert dist.dtype == np.float64


def test_wider_tolerance_reaches_the_nearest_street(crossroads):
    ids, dist = snap(crossroads, [(116.3000, 39.9904)], tolerance_m=50.0)

    assert ids.tolist() == [20]
    assert dist[0] == pytest.approx(5e-4 * M_PER_DEG_LON, rel=1e-3)


def test_heading_along_each_street_keeps_the_vehicle_on_it_at_an_intersection(crossroads):
    # 0.85 m east of the north-south street and 1.1 m north of the east-west one.
    near_corner = (116.30051, 39.99001)
    headings = [90.0, 270.0, 100.0, 0.0, 180.0, 350.0]

    ids, dist = snap(crossroads, [near_corner] * len(headings), headings)

    assert ids.tolist() == [10, 10, 10, 20, 20, 20]
    assert dist[:3] == pytest.approx([1e-5 * M_PER_DEG_LAT] * 3, rel=1e-3)
    assert dist[3:] == pytest.approx([1e-5 * M_PER_DEG_LON] * 3, rel=1e-3)


def test_unknown_heading_takes_the_nearest_street(crossroads):
    near_corner = (116.30051, 39.99001)

    with_nan, _ = snap(crossroads, [near_corner], [np.nan])
    without, _ = snap(crossroads, [near_corner])

    assert with_nan.tolist() == without.tolist() == [20]


def test_heading_across_the_only_street_in_reach_still_snaps(crossroads):
    # Beside the east-west street, far from the north-south one, heading north.
    ids, _ = snap(crossroads, [(116.3001, 39.9901)], [0.0])

    assert ids.tolist() == [10]


def test_heading_tolerance_is_configurable(crossroads):
    lon, lat = np.array([116.30051]), np.array([39.99001])
    heading = np.array([50.0])  # 40 degrees off east-west, 50 off north-south

    strict, _ = crossroads.snap(lon, lat, heading, 30.0, max_heading_diff_deg=30.0)
    loose, _ = crossroads.snap(lon, lat, heading, 30.0, max_heading_diff_deg=45.0)

    assert strict.tolist() == [20]  # nothing aligned: nearest
    assert loose.tolist() == [10]


def test_positions_that_are_not_finite_snap_to_nothing(crossroads):
    ids, dist = snap(crossroads, [(np.nan, 39.99), (116.3002, np.inf), (116.3002, 39.9901)])

    assert ids.tolist() == [-1, -1, 10]
    assert np.isnan(dist[:2]).all()


def test_empty_index_snaps_nothing():
    index = SegmentIndex.build([])

    ids, dist = snap(index, [(116.3, 39.99), (116.31, 39.98)], [0.0, 90.0])

    assert len(index) == 0
    assert ids.tolist() == [-1, -1]
    assert np.isnan(dist).all()


def test_no_points_give_empty_arrays(crossroads):
    ids, dist = crossroads.snap(np.array([]), np.array([]), None, 30.0)

    assert ids.shape == dist.shape == (0,)


def test_long_straight_segment_is_found_from_its_middle():
    # One 850 m piece: its midpoint is far from points near its ends, and vice versa.
    index = SegmentIndex.build([(7, [(116.30, 39.99), (116.31, 39.99)])])

    ids, dist = snap(index, [(116.3001, 39.9901), (116.3099, 39.9899), (116.3050, 39.9902)])

    assert ids.tolist() == [7, 7, 7]
    assert dist == pytest.approx(
        [1e-4 * M_PER_DEG_LAT, 1e-4 * M_PER_DEG_LAT, 2e-4 * M_PER_DEG_LAT], rel=1e-3
    )


def test_polyline_segment_snaps_to_its_nearest_piece():
    # An L-shaped segment; the point sits inside the corner, nearer the vertical leg.
    index = SegmentIndex.build([(3, [(116.300, 39.990), (116.301, 39.990), (116.301, 39.991)])])

    ids, dist = snap(index, [(116.3009, 39.9905)])

    assert ids.tolist() == [3]
    assert dist[0] == pytest.approx(1e-4 * M_PER_DEG_LON, rel=1e-3)


def test_segment_ids_and_length_describe_the_index(crossroads):
    assert len(crossroads) == 2
    assert crossroads.segment_ids.tolist() == [10, 20]
    assert crossroads.segment_ids.dtype == np.int64


def test_tolerance_must_be_positive(crossroads):
    with pytest.raises(ValueError, match="tolerance"):
        snap(crossroads, [(116.3002, 39.9901)], tolerance_m=0.0)
