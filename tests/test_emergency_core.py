"""The emergency numpy core with literal arrays: units, tiers, geometry, incidents, assessment."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.emergency import Release, gaussian_plume, survey_records, survey_route
from telemetry.geo import destination, distance_bearing
from telemetry.kinds.emergency.detection import (
    MOLAR_MASS_G_MOL,
    TierTable,
    assess,
    assign_incidents,
    assign_tiers,
    convert,
    incident_exceedances,
    mgm3_to_ppm,
    ppm_to_mgm3,
    ring_edges_m,
    ring_of,
    sector_names,
    sector_of,
    sector_polygon,
)

NAN = np.nan
OPEN = np.iinfo(np.int64).max


def objects(*values: object) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def tier(id_: int, substance: str, name: str, limit: float, unit: str, severity: str) -> dict:
    return {
        "id": id_,
        "substance": substance,
        "tier": name,
        "limit_value": limit,
        "unit": unit,
        "averaging": "60min",
        "severity": severity,
        "source": f"source of {name}",
        "confirmed": True,
        "note": None,
    }


H2S_TIERS = [
    tier(1, "h2s", "erpg1", 0.1, "ppm", "info"),
    tier(2, "h2s", "occupational", 10, "mg/m3", "info"),
    tier(3, "h2s", "erpg2", 30, "ppm", "warning"),
    tier(4, "h2s", "erpg3", 100_000, "ppb", "critical"),
]


@pytest.fixture
def tiers() -> TierTable:
    return TierTable.from_rows(H2S_TIERS, MOLAR_MASS_G_MOL)


# --- units ---------------------------------------------------------------------------------


def test_ppm_and_mass_units_convert_both_ways_with_the_molar_mass() -> None:
    ppm, mgm3 = convert(
        [10.0, 13.938650306748466, 500.0, 2000.0],
        objects("ppm", "mg/m3", "ppb", "ug/m3"),
        [34.08, 34.08, 17.03, 64.07],
    )

    np.testing.assert_allclose(ppm, [10.0, 10.0, 0.5, 2.0 * 24.45 / 64.07])
    np.testing.assert_allclose(
        mgm3, [10.0 * 34.08 / 24.45, 13.938650306748466, 0.5 * 17.03 / 24.45, 2.0]
    )


def test_without_a_molar_mass_only_the_scale_within_a_unit_kind_is_applied() -> None:
    ppm, mgm3 = convert(
        [3.0, 1500.0, 4.0, 800.0], objects("ppm", "ppb", "mg/m3", "ug/m3"), [NAN, NAN, NAN, NAN]
    )

    np.testing.assert_array_equal(ppm, [3.0, 1.5, NAN, NAN])
    np.testing.assert_array_equal(mgm3, [NAN, NAN, 4.0, 0.8])


def test_an_unknown_unit_converts_to_nothing() -> None:
    ppm, mgm3 = convert([5.0], objects("%LEL"), [16.04])

    assert np.isnan(ppm).all() and np.isnan(mgm3).all()


def test_scalar_helpers_use_24_45_litres_per_mole() -> None:
    assert ppm_to_mgm3(24.45, 70.90) == pytest.approx(70.90)
    assert mgm3_to_ppm(70.90, 70.90) == pytest.approx(24.45)


# --- tiers ---------------------------------------------------------------------------------


def test_tiers_are_ordered_by_concentration_across_units(tiers: TierTable) -> None:
    # 10 mg/m3 of H2S is 7.17 ppm, between ERPG-1 (0.1 ppm) and ERPG-2 (30 ppm); 100000 ppb is
    # 100 ppm.
    assert [str(tiers.tier[i]) for i in tiers.of("h2s")] == [
        "erpg1",
        "occupational",
        "erpg2",
        "erpg3",
    ]
    np.testing.assert_allclose(tiers.limit, [0.1, 10.0, 30.0, 100.0])
    assert tiers.basis_ppm.tolist() == [True, False, True, True]


def test_each_reading_gets_the_highest_tier_it_exceeds_and_exactly_at_a_limit_is_not_over(
    tiers: TierTable,
) -> None:
    sent_ppm = np.array([0.05, 0.1, 0.11, 7.0, 7.2, 30.0, 30.5, 100.0, 250.0])
    ppm, mgm3 = convert(sent_ppm, objects(*["ppm"] * 9), np.full(9, 34.08))

    found = assign_tiers(objects(*["h2s"] * 9), ppm, mgm3, tiers)

    names = [None if i < 0 else str(tiers.tier[i]) for i in found]
    assert names == [
        None,
        None,  # exactly 0.1 ppm: at the limit, not over it
        "erpg1",
        "erpg1",  # 7.0 ppm = 9.76 mg/m3, under the 10 mg/m3 occupational limit
        "occupational",  # 7.2 ppm = 10.04 mg/m3
        "occupational",  # exactly 30 ppm
        "erpg2",
        "erpg2",
        "erpg3",
    ]


def test_a_reading_exactly_at_a_mass_limit_sent_in_mass_units_is_not_over(
    tiers: TierTable,
) -> None:
    ppm, mgm3 = convert([10.0, 10.001], objects("mg/m3", "mg/m3"), [34.08, 34.08])

    found = assign_tiers(objects("h2s", "h2s"), ppm, mgm3, tiers)

    assert [str(tiers.tier[i]) for i in found] == ["erpg1", "occupational"]


def test_a_tier_in_the_other_unit_kind_never_applies_when_nothing_could_be_converted(
    tiers: TierTable,
) -> None:
    # Without the molar mass, 50 mg/m3 cannot be compared with ppm tiers and 40 ppm cannot be
    # compared with the mg/m3 tier: only same-kind tiers apply.
    ppm, mgm3 = convert([50.0, 40.0], objects("mg/m3", "ppm"), [NAN, NAN])

    found = assign_tiers(objects("h2s", "h2s"), ppm, mgm3, tiers)

    assert [None if i < 0 else str(tiers.tier[i]) for i in found] == ["occupational", "erpg2"]


def test_readings_of_a_substance_without_tiers_get_none(tiers: TierTable) -> None:
    found = assign_tiers(objects("voc", "nh3"), np.array([900.0, 900.0]), np.full(2, NAN), tiers)

    assert found.tolist() == [-1, -1]


def test_severity_never_falls_as_the_tier_rises() -> None:
    table = TierTable.from_rows(
        [
            tier(1, "hcl", "aegl2", 100, "ppm", "warning"),
            tier(2, "hcl", "idlh", 50, "ppm", "critical"),
            tier(3, "hcl", "aegl1", 1.8, "ppm", "info"),
            tier(4, "nh3", "erpg1", 25, "ppm", "info"),
        ],
        MOLAR_MASS_G_MOL,
    )

    assert table.severity.tolist() == ["critical", "critical", "info", "info"]


def test_a_tier_in_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        TierTable.from_rows([tier(1, "ch4", "lel25", 25, "%LEL", "warning")], MOLAR_MASS_G_MOL)


# --- geometry and incidents ----------------------------------------------------------------


def test_distance_and_bearing_from_the_source() -> None:
    d, b = distance_bearing(40.0, 116.0, [40.01, 40.0, 39.99, 40.0], [116.0, 116.01, 116.0, 115.99])

    np.testing.assert_allclose(d[[0, 2]], 1111.95, atol=0.01)
    np.testing.assert_allclose(d[[1, 3]], 851.81, atol=0.1)
    np.testing.assert_allclose(b, [0.0, 90.0, 180.0, 270.0], atol=0.01)


def test_destination_inverts_distance_and_bearing() -> None:
    lat, lon = destination(40.0, 116.0, [0.0, 135.0, 350.0], [500.0, 2000.0, 4500.0])
    d, b = distance_bearing(40.0, 116.0, lat, lon)

    np.testing.assert_allclose(d, [500.0, 2000.0, 4500.0], rtol=1e-9)
    np.testing.assert_allclose(b, [0.0, 135.0, 350.0], atol=1e-6)


def test_readings_belong_to_the_nearest_incident_containing_them_in_space_and_time() -> None:
    lat = np.array([40.0, 40.0, 40.0, 40.0, 40.0, 40.1])
    lon = np.array([116.01, 116.01, 116.01, 116.01, 116.03, 116.5])
    ts = np.array([150, 50, 250, 150, 150, 150], dtype=np.int64)
    match = assign_incidents(
        lat,
        lon,
        ts,
        incident_lat=np.array([40.0, 40.0]),
        incident_lon=np.array([116.0, 116.04]),
        radius_m=np.array([5000.0, 5000.0]),
        start_us=np.array([100, 0], dtype=np.int64),
        end_us=np.array([200, OPEN], dtype=np.int64),
    )

    # 0: both contain it, the first is nearer; 1: before the first started, so the second;
    # 2: after the first closed; 4: nearer the second; 5: outside both radii.
    assert match.incident.tolist() == [0, 1, 1, 0, 1, -1]
    assert np.isnan(match.distance_m[5]) and np.isnan(match.bearing_deg[5])
    np.testing.assert_allclose(match.bearing_deg[0], 90.0, atol=0.01)


def test_a_reading_on_the_radius_is_inside() -> None:
    lat, lon = destination(40.0, 116.0, 45.0, 4999.999)
    match = assign_incidents(
        lat.reshape(1),
        lon.reshape(1),
        np.array([10], dtype=np.int64),
        incident_lat=np.array([40.0]),
        incident_lon=np.array([116.0]),
        radius_m=np.array([5000.0]),
        start_us=np.array([10], dtype=np.int64),
        end_us=np.array([OPEN], dtype=np.int64),
    )

    assert match.incident.tolist() == [0]


# --- exceedances ---------------------------------------------------------------------------


def test_exceedances_group_by_incident_tier_and_vehicle_with_the_multiple(
    tiers: TierTable,
) -> None:
    sent = np.array([40.0, 45.0, 60.0, 150.0, 12.0, 900.0])
    ppm, mgm3 = convert(sent, objects(*["ppm"] * 6), np.full(6, 34.08))

    found = incident_exceedances(
        vehicle_id=objects("em-1", "em-1", "em-2", "em-1", "em-1", "em-1"),
        ts_us=np.array([1, 2, 3, 4, 5, 6], dtype=np.int64),
        substance=objects(*["h2s"] * 6),
        value_ppm=ppm,
        value_mgm3=mgm3,
        incident_id=np.array([7, 7, 7, 7, 7, -1]),
        distance_m=np.array([100.0, 200.0, 300.0, 400.0, 500.0, 600.0]),
        bearing_deg=np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
        tiers=tiers,
    )

    summary = sorted((e.rule, e.vehicle_id, e.readings, e.peak, e.severity) for e in found)
    assert summary == [
        ("tier:erpg2", "em-1", 2, 45.0, "warning"),
        ("tier:erpg2", "em-2", 1, 60.0, "warning"),
        ("tier:erpg3", "em-1", 1, 150.0, "critical"),
        ("tier:occupational", "em-1", 1, pytest.approx(12.0 * 34.08 / 24.45), "info"),
    ]
    erpg2 = next(e for e in found if e.rule == "tier:erpg2" and e.vehicle_id == "em-1")
    assert erpg2.subject == "incident:7"
    assert erpg2.pollutant == "h2s"
    assert erpg2.unit == "ppm"
    assert erpg2.limit_value == 30.0
    assert erpg2.multiple == pytest.approx(0.5)  # (45 - 30) / 30
    assert (erpg2.first_us, erpg2.last_us) == (1, 2)
    assert erpg2.details["distance_m"] == 200.0 and erpg2.details["bearing_deg"] == 20.0
    occupational = next(e for e in found if e.rule == "tier:occupational")
    assert occupational.unit == "mg/m3"


# --- rings, sectors and the assessment ------------------------------------------------------


def test_sectors_are_centred_on_north_and_wrap_at_360() -> None:
    bearings = np.array([0.0, 359.9, 348.75, 348.7499, 11.2499, 11.25, 90.0, 180.0, 360.0, NAN])

    assert sector_of(bearings, 16).tolist() == [0, 0, 0, 15, 0, 1, 4, 8, 0, -1]
    assert sector_of(np.array([44.9, 45.0, 315.0, 314.9]), 4).tolist() == [0, 1, 0, 3]
    assert sector_names(16)[:4] == ["N", "NNE", "NE", "ENE"]
    assert sector_names(5) == ["0°", "72°", "144°", "216°", "288°"]


def test_rings_are_half_open_and_the_last_includes_its_outer_edge() -> None:
    edges = ring_edges_m()

    assert edges.tolist() == [0.0, 500.0, 1000.0, 2000.0, 3000.0, 5000.0]
    distances = np.array([0.0, 499.9, 500.0, 1999.0, 2000.0, 5000.0, 5000.1, NAN])
    assert ring_of(distances, edges).tolist() == [0, 0, 1, 2, 3, 4, -1, -1]
    with pytest.raises(ValueError, match="increasing"):
        ring_edges_m([1.0, 1.0])


def test_assessment_bins_by_ring_and_sector_with_max_latest_and_worst_tier(
    tiers: TierTable,
) -> None:
    sent = np.array([35.0, 20.0, 150.0, 5.0, 0.5, 400.0, 9.0])
    ppm, mgm3 = convert(sent, objects(*["ppm"] * 6, "ppm"), np.r_[np.full(6, 34.08), NAN])

    result = assess(
        substance=objects("h2s", "h2s", "h2s", "h2s", "h2s", "h2s", "voc"),
        value_ppm=ppm,
        value_mgm3=mgm3,
        ts_us=np.array([30, 20, 10, 40, 50, 60, 70], dtype=np.int64),
        distance_m=np.array([300.0, 350.0, 1500.0, 2500.0, 4000.0, 6000.0, 100.0]),
        bearing_deg=np.array([359.0, 1.0, 90.0, 92.0, 180.0, 0.0, 45.0]),
        tiers=tiers,
    )

    assert result.group_substance.tolist() == ["h2s", "voc"]
    assert result.group_unit.tolist() == ["ppm", "ppm"]
    cells = {
        (int(g), int(r), int(s)): (int(n), float(mx), float(lt), int(t))
        for g, r, s, n, mx, lt, t in zip(
            result.cell_group,
            result.cell_ring,
            result.cell_sector,
            result.cell_count,
            result.cell_max,
            result.cell_latest,
            result.cell_tier,
            strict=True,
        )
    }
    # Bearings 359° and 1° share the north sector; the latest is by measurement time (ts 30).
    assert cells == {
        (0, 0, 0): (2, 35.0, 35.0, 2),
        (0, 2, 4): (1, 150.0, 150.0, 3),
        (0, 3, 4): (1, 5.0, 5.0, 0),
        (0, 4, 8): (1, 0.5, 0.5, 0),
        (1, 0, 2): (1, 9.0, 9.0, -1),
    }
    assert result.group_outside.tolist() == [1, 0]  # 6 km is beyond the 5 km ring
    assert result.group_max.tolist() == [400.0, 9.0]
    assert result.group_latest.tolist() == [400.0, 9.0]
    assert result.group_tier.tolist() == [3, -1]
    # The farthest exceedance of any tier is the 400 ppm reading at 6 km, outside the rings.
    assert result.group_farthest_m[0] == 6000.0 and np.isnan(result.group_farthest_m[1])
    reach = {
        str(tiers.tier[t]): (np.flatnonzero(s).tolist(), far, n)
        for g, t, s, far, n in zip(
            result.reach_group,
            result.reach_tier,
            result.reach_sectors,
            result.reach_farthest_m,
            result.reach_count,
            strict=True,
        )
        if g == 0
    }
    assert reach == {
        "erpg1": ([0, 4, 8], 6000.0, 6),
        "occupational": ([0, 4], 6000.0, 4),
        "erpg2": ([0, 4], 6000.0, 3),
        "erpg3": ([0, 4], 6000.0, 2),
    }


def test_assessment_of_no_readings_is_empty(tiers: TierTable) -> None:
    result = assess(
        substance=objects(),
        value_ppm=np.empty(0),
        value_mgm3=np.empty(0),
        ts_us=np.empty(0, dtype=np.int64),
        distance_m=np.empty(0),
        bearing_deg=np.empty(0),
        tiers=tiers,
        rings_km=[1.0],
        sectors=8,
    )

    assert result.group_substance.shape == (0,)
    assert result.cell_count.shape == (0,)
    assert result.reach_sectors.shape == (0, 8)


def test_sector_polygon_is_a_closed_ring_between_the_radii() -> None:
    ring = sector_polygon(40.0, 116.0, 500.0, 1000.0, 348.75, 11.25)
    lon, lat = np.array(ring).T
    d, _ = distance_bearing(40.0, 116.0, lat, lon)

    assert ring[0] == ring[-1]
    assert d.min() == pytest.approx(500.0, abs=0.05)  # coordinates have 7 decimals
    assert d.max() == pytest.approx(1000.0, abs=0.05)
    wedge = sector_polygon(40.0, 116.0, 0.0, 500.0, 0.0, 90.0)
    assert [116.0, 40.0] in wedge


# --- the simulator's plume and survey ------------------------------------------------------


def test_gaussian_plume_centreline_matches_the_closed_form() -> None:
    # Ground release, ground receptor, class D at 1 km: σy = 0.08·1000·1.1^-0.5 = 76.28 m,
    # σz = 0.06·1000·2.5^-0.5 = 37.95 m, C = Q / (π u σy σz) = 7.331 mg/m3 for 200 g/s at 3 m/s.
    c = gaussian_plume(
        np.array([1000.0, 1000.0, 1000.0, -50.0]),
        np.array([0.0, 100.0, -100.0, 0.0]),
        emission_g_s=200.0,
        wind_speed_ms=3.0,
        stability="D",
        receptor_height_m=0.0,
    )

    assert c[0] == pytest.approx(7.3313, rel=1e-4)
    assert c[1] == c[2] < c[0]  # symmetric across the axis
    assert c[3] == 0.0  # nothing upwind


def test_survey_starts_upwind_and_crosses_the_plume_downwind() -> None:
    release = Release(40.0, 116.0, "h2s", 200.0, 3.0, wind_from_deg=270.0, stability="D")

    lat, lon = survey_route(release, arcs_m=(300.0, 1000.0), speed_ms=10.0)
    records = survey_records(release, lat, lon, start_ms=1_000, seed=3)

    d, b = distance_bearing(40.0, 116.0, lat, lon)
    assert d[0] == pytest.approx(500.0, rel=1e-3) and b[0] == pytest.approx(270.0, abs=0.1)
    steps, _ = distance_bearing(lat[:-1], lon[:-1], lat[1:], lon[1:])
    assert steps.max() == pytest.approx(10.0, rel=1e-3)  # equirectangular vs great circle
    values = np.array([r["gases"]["h2s"]["value"] for r in records])
    assert values[0] == 0.0  # the upwind control point reads clean air
    peak = int(np.argmax(values))
    assert d[peak] == pytest.approx(300.0, rel=0.02) and b[peak] == pytest.approx(90.0, abs=10)
    assert [r["ts"] for r in records[:3]] == [1_000, 2_000, 3_000]
    assert records[0]["gases"]["h2s"]["unit"] == "ppm"
