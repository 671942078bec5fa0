"""Simulated vehicles publish as real ones do: each with its own broker account and connection.

A simulator registers the vehicles it drives directly in the database
(``TELEMETRY_DATABASE_URL``) as *simulated* accounts with a new password on every run, then
connects once per vehicle with those credentials. It never takes over a vehicle a person
registered (``telemetry vehicles register``); a load test removes its accounts when it ends.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg

from simulators.publisher import Publisher, PublishError
from telemetry.broker import repository, vehicles
from telemetry.errors import TelemetryError
from telemetry.kinds.contract import Kind
from telemetry.settings import MqttEndpoint, Settings

__all__ = ["fleet_publishers", "register_vehicles", "remove_vehicles", "vehicle_publisher"]

# Registration reaches the broker within seconds (docs/adr/0007-broker-accounts.md); until
# then the broker refuses the new password.
_ACCOUNT_WAIT_S = 30.0
_CONNECTING_AT_ONCE = 50


async def _on_database(settings: Settings, work: Any) -> Any:
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TelemetryError(
            f"cannot connect to the database to register the simulated vehicles: {exc}"
        ) from exc
    try:
        return await work(conn)
    finally:
        await conn.close()


async def register_vehicles(
    settings: Settings, wanted: Sequence[tuple[str, Kind]]
) -> dict[str, str]:
    """Register simulated vehicles with new passwords; returns {vehicle id: password}."""
    result: dict[str, str] = await _on_database(
        settings, lambda conn: vehicles.register_simulated(conn, wanted)
    )
    return result


async def remove_vehicles(settings: Settings, vehicle_ids: Sequence[str]) -> None:
    """Delete simulated vehicles' accounts (never a person's)."""
    await _on_database(settings, lambda conn: repository.delete_simulated(conn, list(vehicle_ids)))


def _endpoint(settings: Settings, vehicle_id: str, password: str) -> MqttEndpoint:
    endpoint = copy.copy(MqttEndpoint(settings.mqtt_url))
    endpoint.username, endpoint.password = vehicle_id, password
    return endpoint


async def _open(
    stack: AsyncExitStack, endpoint: MqttEndpoint, client_id: str, **kwargs: Any
) -> Publisher:
    """Connect, retrying while the broker has not loaded the new account yet."""
    deadline = asyncio.get_running_loop().time() + _ACCOUNT_WAIT_S
    while True:
        try:
            return await stack.enter_async_context(Publisher(endpoint, client_id, **kwargs))
        except PublishError as exc:
            if not exc.refused or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.25)


@asynccontextmanager
async def fleet_publishers(
    settings: Settings, vehicle_ids: Sequence[str], kind: Kind, **kwargs: Any
) -> AsyncIterator[dict[str, Publisher]]:
    """Register the vehicles and open one connection per vehicle, as that vehicle; yields
    {vehicle id: publisher}. ``kwargs`` go to each :class:`Publisher`."""
    passwords = await register_vehicles(settings, [(v, kind) for v in vehicle_ids])
    pid = os.getpid()
    async with AsyncExitStack() as stack:
        publishers: dict[str, Publisher] = {}
        ids = list(vehicle_ids)
        for i in range(0, len(ids), _CONNECTING_AT_ONCE):
            chunk = ids[i : i + _CONNECTING_AT_ONCE]
            opened = await asyncio.gather(
                *(
                    _open(stack, _endpoint(settings, v, passwords[v]), f"sim-{v}-{pid}", **kwargs)
                    for v in chunk
                ),
                return_exceptions=True,
            )
            for vehicle_id, result in zip(chunk, opened, strict=True):
                if isinstance(result, BaseException):
                    raise result
                publishers[vehicle_id] = result
        yield publishers


@asynccontextmanager
async def vehicle_publisher(
    settings: Settings, vehicle_id: str, kind: Kind, **kwargs: Any
) -> AsyncIterator[Publisher]:
    """Register one simulated vehicle and connect as it."""
    async with fleet_publishers(settings, [vehicle_id], kind, **kwargs) as publishers:
        yield publishers[vehicle_id]
