"""Migration 0010 on an installation that ran 0001-0009: old walk-through alerts keep their
history under the honest rule name, the TVOC row becomes a local trigger and GB 3095-2012 rows
apply from 2016-01-01. Running it twice changes nothing more."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg

MIGRATION = Path(__file__).resolve().parent.parent / "migrations" / "0010_alert_verification.sql"

_STATE = """
SELECT a.rule, a.rules, a.segments, a.peak_ratio, a.peak_multiple, a.confidence, a.status,
       a.resolution
FROM alerts a ORDER BY a.id
"""


async def test_0010_upgrades_an_existing_installation_and_is_idempotent(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        # The state 0001-0009 left: a TVOC "limit", GB 3095-2012 from its issue date, and
        # alerts of the old rules, one resolved by the silence sweep.
        await conn.execute(
            "UPDATE thresholds SET tier = 'limit' WHERE pollutant = 'tvoc' AND kind = 'walkthrough'"
        )
        await conn.execute(
            "UPDATE thresholds SET effective_from = '2012-02-29' WHERE source LIKE 'GB 3095-2012%'"
        )
        await conn.execute(
            """
            INSERT INTO alerts (kind, subject, segment_id, pollutant, rule, limit_value, unit,
                                source, first_seen, last_seen, last_value, peak_value,
                                peak_multiple, status, resolved_by)
            VALUES ('walkthrough', 'segment:5', 5, 'pm25', 'limit', 60, 'ug/m3', 'GB 3095-2026',
                    now(), now(), 120, 120, 1.0, 'open', NULL),
                   ('walkthrough', 'segment:6', 6, 'pm25', 'hotspot', 40, 'ug/m3', 'hotspot',
                    now(), now(), 100, 100, 1.5, 'resolved', 'system')
            """
        )
        await conn.execute(
            "UPDATE alerts SET rules = '{}', segments = '{}', peak_ratio = NULL, "
            "resolution = NULL, confidence = 'confirmed'"
        )
        # 0013's alert_events triggers, deferred to the commit, postdate 0010: fire them at
        # once, or 0010's index on alerts would meet their pending events.
        sql = "SET CONSTRAINTS ALL IMMEDIATE;\n" + MIGRATION.read_text(encoding="utf-8")
        await conn.execute(sql)
        once = [dict(r) for r in await conn.fetch(_STATE)]
        thresholds = await conn.fetch(
            "SELECT pollutant, tier, source, effective_from FROM thresholds "
            "WHERE kind = 'walkthrough' AND (pollutant = 'tvoc' OR source LIKE 'GB 3095-2012%')"
        )
        await conn.execute(sql)
        twice = [dict(r) for r in await conn.fetch(_STATE)]

    assert once == twice
    limit, hotspot = once
    assert (limit["rule"], limit["rules"], limit["segments"]) == (
        "reference_ratio",
        ["reference_ratio"],
        [5],
    )
    assert (limit["peak_ratio"], limit["peak_multiple"]) == (2.0, None)
    assert limit["confidence"] == "suspected"
    assert (hotspot["rules"], hotspot["peak_ratio"], hotspot["peak_multiple"]) == (
        ["hotspot"],
        2.5,
        1.5,
    )
    assert hotspot["resolution"] == "quiet"
    [tvoc] = [t for t in thresholds if t["pollutant"] == "tvoc"]
    assert tvoc["tier"] == "trigger" and "fixed-point" in tvoc["source"]
    old = [t for t in thresholds if t["pollutant"] != "tvoc"]
    assert len(old) == 6 and {t["effective_from"] for t in old} == {dt.date(2016, 1, 1)}
