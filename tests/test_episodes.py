import asyncio
import datetime as dt

import asyncpg
import pytest

from telemetry.alerts.episodes import auto_resolve, mark_stale, record_exceedances, sweep_alerts
from telemetry.alerts.exceedance import Exceedance

S = 1_000_000
T0_DT = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
T0 = int(T0_DT.timestamp()) * S


def exceedance(**kw) -> Exceedance:
    fields = {
        "kind": "walkthrough",
        "subject": "segment:11",
        "segment_id": 11,
        "pollutant": "pm25",
        "rule": "limit",
        "threshold_id": None,
        "limit_value": 60.0,
        "unit": "ug/m3",
        "averaging": "24h",
        "source": "GB 3095-2026 Table 1, transitional Grade II",
        "severity": "warning",
        "first_us": T0,
        "last_us": T0 + 10 * S,
        "value": 90.0,
        "peak": 120.0,
        "multiple": 0.5,
        "vehicle_id": "v1",
        "readings": 10,
        "details": {"averaging": "24h"},
    }
    fields.update(kw)
    return Exceedance(**fields)


def at(seconds: int) -> dict:
    """first_us / last_us of a 10 s pass starting ``seconds`` after T0."""
    return {"first_us": T0 + seconds * S, "last_us": T0 + (seconds + 10) * S}


async def record(pool, exceedances) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await record_exceedances(conn, exceedances)


async def alerts(pool) -> list[dict]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM alerts ORDER BY id")]


async def test_repeated_exceedances_update_one_episode(pool):
    assert await record(pool, [exceedance(**at(0), value=90.0, multiple=0.5, vehicle_id="v1")]) == 1
    assert (
        await record(pool, [exceedance(**at(100), value=66.0, multiple=0.1, vehicle_id="v0")]) == 0
    )
    [a] = await alerts(pool)
    assert a["status"] == "open"
    assert a["occurrences"] == 2
    assert a["first_seen"] == T0_DT
    assert a["last_seen"] == T0_DT + dt.timedelta(seconds=110)
    assert a["last_value"] == 66.0
    assert (a["peak_value"], a["peak_multiple"]) == (90.0, 0.5)
    assert a["vehicles"] == ["v0", "v1"]
    assert a["updated_at"] >= a["created_at"]


async def test_one_batch_is_aggregated_per_key_before_the_upsert(pool):
    batch = [
        exceedance(**at(20), value=70.0, multiple=1 / 6, vehicle_id="v2"),
        exceedance(**at(0), value=95.0, multiple=0.58, vehicle_id="v1", severity="critical"),
        exceedance(**at(40), value=65.0, multiple=1 / 12, vehicle_id="v2"),
        exceedance(**at(0), pollutant="no2", limit_value=200.0, value=250.0, multiple=0.25),
    ]
    assert await record(pool, batch) == 2
    rows = {a["pollutant"]: a for a in await alerts(pool)}
    pm25 = rows["pm25"]
    assert pm25["occurrences"] == 3
    assert pm25["first_seen"] == T0_DT
    assert pm25["last_seen"] == T0_DT + dt.timedelta(seconds=50)
    assert pm25["last_value"] == 65.0
    assert pm25["peak_value"] == 95.0
    assert pm25["peak_multiple"] == pytest.approx(0.58)
    assert pm25["vehicles"] == ["v1", "v2"]
    assert pm25["severity"] == "critical"
    assert rows["no2"]["occurrences"] == 1


async def test_worst_severity_is_kept_across_batches(pool):
    await record(pool, [exceedance(**at(0), severity="critical")])
    await record(pool, [exceedance(**at(100), severity="warning")])
    [a] = await alerts(pool)
    assert a["severity"] == "critical"


async def test_late_exceedance_widens_first_seen_without_moving_last_value(pool):
    await record(pool, [exceedance(**at(600), value=80.0, source="current")])
    await record(pool, [exceedance(**at(0), value=200.0, multiple=2.3, source="older")])
    [a] = await alerts(pool)
    assert a["first_seen"] == T0_DT
    assert a["last_seen"] == T0_DT + dt.timedelta(seconds=610)
    assert a["last_value"] == 80.0
    assert a["source"] == "current"
    assert a["peak_value"] == 200.0
    assert a["occurrences"] == 2


async def test_acknowledged_episode_keeps_absorbing_repeats(pool):
    await record(pool, [exceedance(**at(0))])
    await pool.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_by = 'ops'")
    assert await record(pool, [exceedance(**at(100))]) == 0
    [a] = await alerts(pool)
    assert (a["status"], a["occurrences"]) == ("acknowledged", 2)


async def test_concurrent_transactions_on_one_key_open_exactly_one_episode(pool, database_url):
    conns = [await asyncpg.connect(database_url) for _ in range(2)]
    try:

        async def one(conn, vehicle):
            async with conn.transaction():
                return await record_exceedances(conn, [exceedance(**at(0), vehicle_id=vehicle)])

        opened = await asyncio.gather(one(conns[0], "v1"), one(conns[1], "v2"))
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(opened) == [0, 1]
    [a] = await alerts(pool)
    assert a["occurrences"] == 2
    assert a["vehicles"] == ["v1", "v2"]


async def test_second_worker_waits_for_the_first_and_joins_its_episode(pool, database_url):
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        tx = first.transaction()
        await tx.start()
        assert await record_exceedances(first, [exceedance(**at(0), vehicle_id="v1")]) == 1

        async def second_worker():
            async with second.transaction():
                return await record_exceedances(second, [exceedance(**at(30), vehicle_id="v2")])

        task = asyncio.create_task(second_worker())
        pid = second.get_server_pid()
        for _ in range(500):  # until the second insert blocks on the first one's index entry
            if await pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the second transaction never waited for the first")
        await tx.commit()
        assert await task == 0
    finally:
        await first.close()
        await second.close()
    [a] = await alerts(pool)
    assert (a["occurrences"], a["vehicles"]) == (2, ["v1", "v2"])


async def test_exceedance_after_resolution_opens_a_new_episode(pool):
    await record(pool, [exceedance(**at(0))])
    later = T0_DT + dt.timedelta(hours=2)
    assert await auto_resolve(pool, quiet_period_s=1800, now=later, kinds=["walkthrough"]) == 1
    assert await record(pool, [exceedance(**at(7200))]) == 1
    rows = await alerts(pool)
    assert [(a["status"], a["occurrences"]) for a in rows] == [("resolved", 1), ("open", 1)]


async def test_auto_resolve_resolves_only_quiet_episodes_of_quiet_kinds(pool):
    await record(
        pool,
        [
            exceedance(**at(0), kind="emergency", subject="segment:1", segment_id=1),
            exceedance(**at(0), kind="emergency", subject="segment:2", segment_id=2),
            exceedance(**at(3000), kind="emergency", subject="segment:3", segment_id=3),
            # Walk-through and high-emitter alerts never close by silence.
            exceedance(**at(0), subject="segment:4", segment_id=4),
            exceedance(**at(0), kind="remote_sensing", subject="plate:A1", rule="high_emitter"),
        ],
    )
    await pool.execute("UPDATE alerts SET status = 'acknowledged' WHERE subject = 'segment:2'")
    now = T0_DT + dt.timedelta(seconds=3600)
    assert await auto_resolve(pool, quiet_period_s=1800, now=now) == 2
    rows = {a["subject"]: a for a in await alerts(pool)}
    for subject in ("segment:1", "segment:2"):
        a = rows[subject]
        assert (a["status"], a["resolved_by"], a["resolved_at"]) == ("resolved", "system", now)
        assert "1800 s" in a["resolve_note"]
    assert rows["segment:1"]["resolution"] == "quiet"
    assert rows["segment:3"]["status"] == "open"
    assert rows["segment:3"]["resolved_at"] is None
    assert rows["segment:4"]["status"] == "open"
    assert rows["plate:A1"]["status"] == "open"
    # Already resolved episodes are not touched again.
    async with pool.acquire() as conn:
        assert await auto_resolve(conn, quiet_period_s=1800, now=now) == 0


async def test_auto_resolve_needs_an_aware_time(pool):
    with pytest.raises(ValueError, match="timezone"):
        await auto_resolve(pool, quiet_period_s=1800, now=dt.datetime(2026, 5, 1))


async def test_details_follow_the_latest_measurement(pool):
    threshold_id = await pool.fetchval(
        "SELECT id FROM thresholds WHERE pollutant = 'pm25' AND effective_from = '2026-03-01'"
    )
    await record(pool, [exceedance(**at(0), threshold_id=threshold_id, details={"a": 1, "b": 1})])
    await record(pool, [exceedance(**at(100), threshold_id=threshold_id, details={"b": 2})])
    [a] = await alerts(pool)
    assert a["details"] == {"a": 1, "b": 2}
    assert a["threshold_id"] == threshold_id


async def test_no_exceedances_record_nothing(pool):
    async with pool.acquire() as conn:
        assert await record_exceedances(conn, []) == 0


async def test_stale_marks_unmeasured_walkthrough_alerts_without_resolving_them(pool):
    await record(
        pool,
        [
            exceedance(**at(0), subject="road:a", segment_id=1),
            exceedance(**at(3000), subject="road:b", segment_id=2),
            exceedance(**at(0), kind="emergency", subject="incident:1"),
        ],
    )
    now = T0_DT + dt.timedelta(seconds=3600)
    resolved, stale = await sweep_alerts(pool, quiet_period_s=1e9, stale_after_s=1800, now=now)
    assert (resolved, stale) == (0, 1)
    rows = {a["subject"]: a for a in await alerts(pool)}
    assert (rows["road:a"]["status"], rows["road:a"]["stale_since"]) == ("open", now)
    assert rows["road:b"]["stale_since"] is None
    assert rows["incident:1"]["stale_since"] is None  # only walk-through alerts go stale
    # Marked once; a new pass over the stretch clears the flag.
    assert await mark_stale(pool, stale_after_s=1800, now=now) == 0
    await record(pool, [exceedance(**at(3500), subject="road:a", segment_id=1)])
    [a] = [a for a in await alerts(pool) if a["subject"] == "road:a"]
    assert a["stale_since"] is None


async def test_one_drive_is_suspected_and_a_repeat_drive_confirms(pool):
    suspected = {"confidence": "suspected", "details": {"drive_gap_s": 900}}
    await record(pool, [exceedance(**at(0), vehicle_id="v1", **suspected)])
    # The same vehicle a few seconds later, on the same drive: still suspected.
    await record(pool, [exceedance(**at(20), vehicle_id="v1", **suspected)])
    [a] = await alerts(pool)
    assert (a["confidence"], a["confirmed_at"]) == ("suspected", None)
    # The same vehicle on another drive (more than the drive gap later) confirms.
    await record(pool, [exceedance(**at(2000), vehicle_id="v1", **suspected)])
    [a] = await alerts(pool)
    assert a["confidence"] == "confirmed" and a["confirmed_at"] is not None


async def test_another_vehicle_or_a_fixed_point_measurement_confirms(pool):
    suspected = {"confidence": "suspected"}
    await record(pool, [exceedance(**at(0), vehicle_id="v1", subject="road:x", **suspected)])
    await record(pool, [exceedance(**at(30), vehicle_id="v2", subject="road:x", **suspected)])
    await record(pool, [exceedance(**at(0), vehicle_id="v1", subject="road:y", **suspected)])
    await record(pool, [exceedance(**at(30), vehicle_id="v1", subject="road:y")])  # fixed point
    rows = {a["subject"]: a for a in await alerts(pool)}
    assert rows["road:x"]["confidence"] == "confirmed"
    assert rows["road:y"]["confidence"] == "confirmed"


async def test_rules_and_segments_of_one_stretch_are_listed_on_one_alert(pool):
    common = {"subject": "road:demo/7", "rule": "pass_screening", "multiple": None}
    await record(
        pool,
        [
            exceedance(**at(0), segment_id=1, segments=(1,), rules=("reference_ratio",), **common),
            exceedance(**at(3), segment_id=2, segments=(2,), rules=("hotspot",), **common),
        ],
    )
    await record(pool, [exceedance(**at(6), segment_id=3, segments=(3,), ratio=2.5, **common)])
    [a] = await alerts(pool)
    assert a["segments"] == [1, 2, 3]
    assert a["rules"] == ["hotspot", "pass_screening", "reference_ratio"]
    assert a["peak_multiple"] is None
    assert a["peak_ratio"] == 2.5
