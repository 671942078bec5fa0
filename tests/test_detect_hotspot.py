import math

import numpy as np
import pytest

from telemetry.kinds.walkthrough.detection.hotspot import background_level
from telemetry.kinds.walkthrough.record import POLLUTANTS
from telemetry.kinds.walkthrough.repository import pass_backgrounds

S = 1_000_000
NOW = 1_780_000_000 * S


def test_background_is_the_low_percentile_inside_the_window():
    ts = NOW - np.array([1000, 800, 600, 400, 200, 0, -10], dtype=np.int64) * S
    values = np.array([1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 2.0])
    # Inside [now - 900 s, now]: 10, 20, 30, 40, 50 (the 1000 s old and the future value are out).
    level = background_level(ts, values, now_us=NOW, window_s=900, percentile=25, min_samples=5)
    assert level == pytest.approx(20.0)


def test_window_edges_are_inclusive():
    ts = np.array([NOW - 900 * S, NOW], dtype=np.int64)
    level = background_level(
        ts, np.array([4.0, 8.0]), now_us=NOW, window_s=900, percentile=0, min_samples=2
    )
    assert level == 4.0


def test_background_is_nan_with_too_few_finite_values():
    ts = NOW - np.arange(5, dtype=np.int64) * S
    values = np.array([5.0, np.nan, 6.0, np.nan, 7.0])
    kw = {"now_us": NOW, "window_s": 900, "percentile": 10}
    assert math.isnan(background_level(ts, values, min_samples=4, **kw))
    assert background_level(ts, values, min_samples=3, **kw) == pytest.approx(5.2)


# --- the stored, per-vehicle background (what every worker reads) ---------------------------


async def _store(pool, vehicle, ts_us, pm25, flag="N"):
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, pm25, flag) "
        "VALUES ($1, TIMESTAMPTZ 'epoch' + $2 * INTERVAL '1 microsecond', now(), 24.5, 118.1, "
        "$3, $4)",
        [
            (vehicle, int(t), None if math.isnan(v) else float(v), flag)
            for t, v in zip(ts_us, pm25, strict=True)
        ],
    )


async def test_stored_background_is_each_vehicles_own_low_percentile(pool):
    ts = NOW - np.arange(0, 600, 10, dtype=np.int64) * S  # 60 readings over 10 minutes
    rng = np.random.default_rng(7)
    clean = rng.uniform(20, 40, ts.shape[0])
    smoky = clean + 100.0
    await _store(pool, "car-clean", ts, clean)
    await _store(pool, "car-smoky", ts, smoky)
    # An invalid reading (flag other than N) never enters the background.
    await _store(pool, "car-clean", [NOW - 5 * S], [0.001], flag="D")
    async with pool.acquire() as conn:
        levels = await pass_backgrounds(
            conn,
            np.array(["car-clean", "car-smoky", "car-unknown"]),
            np.array([NOW, NOW, NOW], dtype=np.int64),
            window_s=900,
            percentile=10,
            min_samples=30,
        )
    j = POLLUTANTS.index("pm25")
    expected = background_level(ts, clean, now_us=NOW, window_s=900, percentile=10, min_samples=30)
    assert levels[0, j] == pytest.approx(expected)
    assert levels[1, j] == pytest.approx(expected + 100.0)  # its own series, not the fleet's
    assert math.isnan(levels[2, j])  # no readings: no background, hence no hotspot
    assert math.isnan(levels[0, POLLUTANTS.index("no2")])  # never measured


async def test_stored_background_follows_the_pass_time_and_needs_enough_samples(pool):
    ts = NOW - np.arange(0, 600, 10, dtype=np.int64) * S
    await _store(pool, "car-1", ts, np.full(ts.shape[0], 30.0))
    async with pool.acquire() as conn:
        levels = await pass_backgrounds(
            conn,
            np.array(["car-1", "car-1", "car-1"]),
            # A late pass an hour before: nothing measured then. A pass after a gap: a window
            # holding only 10 readings, below the minimum.
            np.array([NOW, NOW - 3600 * S, NOW + 800 * S], dtype=np.int64),
            window_s=900,
            percentile=10,
            min_samples=20,
        )
    j = POLLUTANTS.index("pm25")
    assert levels[0, j] == pytest.approx(30.0)
    assert math.isnan(levels[1, j])
    assert math.isnan(levels[2, j])


async def test_stored_background_is_reused_within_the_refresh_and_never_moves_back(pool):
    ts = NOW - np.arange(0, 600, 10, dtype=np.int64) * S
    await _store(pool, "car-1", ts, np.full(ts.shape[0], 30.0))
    kw = {"window_s": 900, "percentile": 10, "min_samples": 20, "refresh_s": 60}
    j = POLLUTANTS.index("pm25")
    async with pool.acquire() as conn:
        first = await pass_backgrounds(conn, np.array(["car-1"]), np.array([NOW]), **kw)
        stored = await conn.fetchrow("SELECT at, levels FROM walkthrough_backgrounds")
        assert first[0, j] == pytest.approx(30.0)
        assert stored["levels"][j] == pytest.approx(30.0)
        # Cleaner air arrives; within the refresh the stored level is reused, after it the
        # window is read again.
        await _store(pool, "car-1", NOW + np.arange(1, 200, dtype=np.int64) * S, np.full(199, 5.0))
        reused = await pass_backgrounds(conn, np.array(["car-1"]), np.array([NOW + 30 * S]), **kw)
        assert reused[0, j] == pytest.approx(30.0)
        later = await pass_backgrounds(conn, np.array(["car-1"]), np.array([NOW + 120 * S]), **kw)
        assert later[0, j] == pytest.approx(5.0)
        # A late pass is judged against its own time and does not move the stored one back.
        late = await pass_backgrounds(conn, np.array(["car-1"]), np.array([NOW - 100 * S]), **kw)
        assert late[0, j] == pytest.approx(30.0)
        at = await conn.fetchval("SELECT at FROM walkthrough_backgrounds")
        assert at > stored["at"]
