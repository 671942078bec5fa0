import datetime as dt

import numpy as np
import pytest

from telemetry.clock import cst_midnight_us
from telemetry.errors import ConflictError, ValidationError
from telemetry.kinds.walkthrough.detection.thresholds import ThresholdTable
from telemetry.kinds.walkthrough.repository import (
    create_threshold,
    list_thresholds,
    load_thresholds,
)
from telemetry.store.audit import Actor

S = 1_000_000
# 2026-03-01 00:00 CST is 2026-02-28 16:00 UTC.
SWITCH_US = int(dt.datetime(2026, 2, 28, 16, tzinfo=dt.UTC).timestamp()) * S

CLI = Actor(None, "cli:test")


def row(id_, pollutant, limit, start, end, **kw):
    return {
        "id": id_,
        "kind": "walkthrough",
        "pollutant": pollutant,
        "limit_value": limit,
        "unit": "ug/m3",
        "averaging": "24h",
        "source": f"source {id_}",
        "effective_from": start,
        "effective_to": end,
        **kw,
    }


GB3095 = ThresholdTable.from_rows(
    [
        row(1, "pm25", 75, dt.date(2012, 2, 29), dt.date(2026, 3, 1)),
        row(7, "pm25", 60, dt.date(2026, 3, 1), dt.date(2031, 1, 1)),
        row(13, "pm25", 50, dt.date(2031, 1, 1), None),
        row(2, "pm10", 150, dt.date(2012, 2, 29), dt.date(2026, 3, 1)),
        row(20, "pm25", 40, dt.date(2026, 3, 1), None, tier="advisory"),
    ]
)


def test_effective_date_is_midnight_china_standard_time():
    assert cst_midnight_us(dt.date(2026, 3, 1)) == SWITCH_US
    assert cst_midnight_us(dt.date(1970, 1, 1)) == -8 * 3600 * S


def test_lookup_switches_from_gb3095_2012_to_2026_at_cst_midnight():
    ts = np.array([SWITCH_US - 1, SWITCH_US, SWITCH_US + 3600 * S], dtype=np.int64)
    positions = GB3095.lookup("pm25", ts)
    assert GB3095.id[positions].tolist() == [1, 7, 7]
    assert GB3095.limit_value[positions].tolist() == [75.0, 60.0, 60.0]


def test_lookup_reaches_the_open_ended_final_limit():
    ts = np.array([cst_midnight_us(dt.date(2040, 6, 1))], dtype=np.int64)
    assert GB3095.id[GB3095.lookup("pm25", ts)].tolist() == [13]


def test_lookup_is_minus_one_before_any_row_after_a_closed_row_and_for_unknown_pollutants():
    before = np.array([cst_midnight_us(dt.date(2000, 1, 1))], dtype=np.int64)
    assert GB3095.lookup("pm25", before).tolist() == [-1]
    assert GB3095.lookup("pm10", np.array([SWITCH_US], dtype=np.int64)).tolist() == [-1]
    assert GB3095.lookup("benzene", np.array([SWITCH_US], dtype=np.int64)).tolist() == [-1]


def test_lookup_uses_the_tier_asked_for():
    positions = GB3095.lookup("pm25", np.array([SWITCH_US], dtype=np.int64), tier="advisory")
    assert GB3095.id[positions].tolist() == [20]


def test_row_gives_the_fields_of_a_position():
    fields = GB3095.row(int(GB3095.lookup("pm25", np.array([SWITCH_US]))[0]))
    assert fields["id"] == 7
    assert fields["limit_value"] == 60.0
    assert fields["tier"] == "limit"
    assert fields["severity"] == "warning"
    assert fields["confirmed"] is True
    assert fields["effective_from"] == dt.date(2026, 3, 1)
    assert fields["effective_to"] == dt.date(2031, 1, 1)


def test_empty_range_is_rejected():
    with pytest.raises(ValueError, match="effective_to"):
        ThresholdTable.from_rows([row(1, "pm25", 75, dt.date(2026, 3, 1), dt.date(2026, 3, 1))])


async def test_seeded_walkthrough_thresholds_switch_on_2026_03_01(pool):
    table = await load_thresholds(pool, "walkthrough")
    positions = table.lookup("pm25", np.array([SWITCH_US - S, SWITCH_US], dtype=np.int64))
    assert table.limit_value[positions].tolist() == [75.0, 60.0]
    assert "2012" in table.source[positions[0]]
    assert "2026" in table.source[positions[1]]


async def test_new_open_ended_row_closes_the_open_ended_row_it_starts_inside(pool):
    created = await create_threshold(
        pool,
        by=CLI,
        kind="walkthrough",
        pollutant="tvoc",
        limit_value=300,
        unit="ug/m3",
        averaging="instant",
        source="local rule",
        tier="trigger",
        effective_from=dt.date(2027, 1, 1),
    )
    rows = await list_thresholds(pool, kind="walkthrough")
    tvoc = [r for r in rows if r["pollutant"] == "tvoc"]
    assert [(r["effective_from"], r["effective_to"]) for r in tvoc] == [
        (dt.date(2024, 1, 1), dt.date(2027, 1, 1)),
        (dt.date(2027, 1, 1), None),
    ]
    assert tvoc[1]["id"] == created["id"]
    assert created["limit_value"] == 300.0
    table = await load_thresholds(pool, "walkthrough")
    ts = np.array([cst_midnight_us(dt.date(2026, 12, 31)), cst_midnight_us(dt.date(2027, 1, 1))])
    assert table.limit_value[table.lookup("tvoc", ts, tier="trigger")].tolist() == [400.0, 300.0]
    # The TVOC value is a local fixed-point trigger (docs/domain.md §5.5), never a limit.
    assert (table.lookup("tvoc", ts) == -1).all()


async def test_gb3095_2012_applies_from_2016_and_tvoc_is_a_local_trigger(pool):
    rows = await list_thresholds(pool, kind="walkthrough")
    old = [r for r in rows if r["source"].startswith("GB 3095-2012")]
    assert old and {r["effective_from"] for r in old} == {dt.date(2016, 1, 1)}
    [tvoc] = [r for r in rows if r["pollutant"] == "tvoc"]
    assert (tvoc["tier"], tvoc["confirmed"]) == ("trigger", False)
    assert "not a national limit" in tvoc["note"]


async def test_row_overlapping_a_closed_range_conflicts_and_changes_nothing(pool):
    before = await list_thresholds(pool)
    with pytest.raises(ConflictError, match="overlaps"):
        await create_threshold(
            pool,
            by=CLI,
            kind="walkthrough",
            pollutant="pm25",
            limit_value=55,
            unit="ug/m3",
            averaging="24h",
            source="typo",
            effective_from=dt.date(2028, 1, 1),
        )
    assert await list_thresholds(pool) == before


async def test_row_on_the_same_start_date_as_an_open_row_conflicts(pool):
    with pytest.raises(ConflictError):
        await create_threshold(
            pool,
            by=CLI,
            kind="walkthrough",
            pollutant="pm25",
            limit_value=45,
            unit="ug/m3",
            averaging="24h",
            source="duplicate start",
            effective_from=dt.date(2031, 1, 1),
        )


async def test_new_kind_gets_its_first_row_and_listing_filters_by_kind(pool):
    await create_threshold(
        pool,
        by=CLI,
        kind="emergency",
        pollutant="h2s",
        limit_value=10,
        unit="ppm",
        averaging="10min",
        source="NIOSH REL ceiling",
        severity="critical",
        effective_from=dt.date(2020, 1, 1),
        confirmed=False,
        note="check the source",
    )
    rows = await list_thresholds(pool, kind="emergency")
    assert [(r["pollutant"], r["severity"], r["confirmed"]) for r in rows] == [
        ("h2s", "critical", False)
    ]
    assert (
        len(await list_thresholds(pool)) == len(await list_thresholds(pool, kind="walkthrough")) + 1
    )


@pytest.mark.parametrize(
    ("limit_value", "effective_to"),
    [(0.0, None), (-1.0, None), (10.0, dt.date(2019, 1, 1))],
)
async def test_invalid_threshold_is_rejected(pool, limit_value, effective_to):
    with pytest.raises(ValidationError):
        await create_threshold(
            pool,
            by=CLI,
            kind="emergency",
            pollutant="nh3",
            limit_value=limit_value,
            unit="ppm",
            averaging="1h",
            source="test",
            effective_from=dt.date(2020, 1, 1),
            effective_to=effective_to,
        )
