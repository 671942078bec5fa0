"""Remote-sensing rules that read stored state or the clock: where the high-emitter rule's
window starts today, and limit changes.

Routes call these; these call the repository and the pure detection.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from telemetry.kinds.remote_sensing import repository
from telemetry.kinds.remote_sensing.checks import check_limit
from telemetry.kinds.remote_sensing.detection import RuleParams, cst_month, month_start_us
from telemetry.store.audit import Actor

__all__ = ["add_limit", "rule_window_start"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def rule_window_start(pool: asyncpg.Pool, now: dt.datetime) -> dt.datetime:
    """00:00 CST on the first day of the earliest calendar month of the high-emitter rule's
    window that contains ``now``: confirmations since then are current."""
    rule = RuleParams.from_rows((await repository.load_reference(pool)).rule)
    now_us = (now - _EPOCH) // dt.timedelta(microseconds=1)
    month = int(cst_month([now_us])[0]) - (rule.window_months - 1)
    start_us = int(month_start_us([month])[0])
    return _EPOCH + dt.timedelta(microseconds=start_us)


async def add_limit(pool: asyncpg.Pool, *, by: Actor, **fields: Any) -> dict[str, Any]:
    """Check a new limit's values, then add it as made ``by`` (see
    :func:`repository.create_limit`)."""
    check_limit(
        fuel_type=fields["fuel_type"],
        pollutant=fields["pollutant"],
        limit_value=fields["limit_value"],
        unit=fields["unit"],
        source=fields["source"],
    )
    return await repository.create_limit(pool, **fields, by=by)
