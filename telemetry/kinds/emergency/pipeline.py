"""Emergency (应急监测) vehicles: gas concentrations around incidents, with tiered alerts.

A record (topic ``telemetry/emergency/{vehicle_id}``) carries a position, optional weather and
any number of gas concentrations, each in its own unit. Readings are stored in long form (one
row per substance), assigned to the open incident whose radius and window they fall in, and
compared with the substance's tiers; every tier crossed inside an incident is an alert episode.
"""

from __future__ import annotations

import logging

import asyncpg
import msgspec
import numpy as np

from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import CheckResult, Kind, KindRows, Outcome
from telemetry.kinds.emergency.checks import check_emergency
from telemetry.kinds.emergency.detection import (
    TierTable,
    assign_incidents,
    convert,
    incident_exceedances,
)
from telemetry.kinds.emergency.record import (
    EmergencyBatch,
    EmergencyRecord,
    SubstanceTable,
    emergency_batch,
)
from telemetry.kinds.emergency.repository import (
    ReadingRows,
    incidents_during,
    insert_emergency,
    list_substances,
    list_tiers,
)
from telemetry.settings import Settings
from telemetry.store.vehicles import upsert_vehicles

__all__ = ["EmergencyPipeline"]

log = logging.getLogger(__name__)


class EmergencyPipeline:
    """Store → assign to incidents → tiers → exceedances for emergency readings.

    Incidents are looked up inside every batch's transaction, so a newly opened incident
    applies from the next batch on; substances and tiers are reloaded by ``refresh`` (every
    ``min(segments_refresh_s, thresholds_refresh_s)`` in the worker).
    """

    kind = Kind.EMERGENCY
    record: type[msgspec.Struct] = EmergencyRecord

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._substances = SubstanceTable.default()
        self._tiers = TierTable.from_rows([], self._substances.molar_mass)

    @property
    def tiers(self) -> TierTable:
        return self._tiers

    async def refresh(self, pool: asyncpg.Pool) -> None:
        substances = SubstanceTable.from_rows(await list_substances(pool))
        self._tiers = TierTable.from_rows(await list_tiers(pool), substances.molar_mass)
        self._substances = substances

    def to_batch(self, rows: KindRows) -> EmergencyBatch:
        return emergency_batch(rows, self._substances)

    def check(self, batch: EmergencyBatch, *, now_us: int, limits: Limits) -> CheckResult:
        return check_emergency(batch, now_us=now_us, limits=limits)

    async def commit(
        self, conn: asyncpg.Connection, batch: EmergencyBatch, *, now_us: int
    ) -> Outcome:
        if len(batch) == 0:
            return Outcome(0, 0)
        incidents = await incidents_during(conn, int(batch.ts_us.min()), int(batch.ts_us.max()))
        match = assign_incidents(
            batch.lat,
            batch.lon,
            batch.ts_us,
            incident_lat=incidents.lat,
            incident_lon=incidents.lon,
            radius_m=incidents.radius_m,
            start_us=incidents.start_us,
            end_us=incidents.end_us,
        )
        found = match.incident >= 0
        record_incident = np.full(len(batch), -1, dtype=np.int64)
        record_incident[found] = incidents.id[match.incident[found]]
        record_open = np.zeros(len(batch), dtype=bool)
        record_open[found] = incidents.open[match.incident[found]]

        r = batch.gas_record
        value_ppm, value_mgm3 = convert(
            batch.value, batch.unit, self._substances.molar_masses(batch.substance)
        )
        rows = ReadingRows(
            vehicle_id=batch.vehicle_id[r],
            ts_us=batch.ts_us[r],
            received_us=batch.received_us[r],
            substance=batch.substance,
            value=batch.value,
            unit=batch.unit,
            value_ppm=value_ppm,
            value_mgm3=value_mgm3,
            conversion=self._substances.conversions(batch.substance, batch.unit),
            sensor=batch.sensor,
            lat=batch.lat[r],
            lon=batch.lon[r],
            wind_speed_ms=batch.wind_speed_ms[r],
            wind_dir_deg=batch.wind_dir_deg[r],
            temp_c=batch.temp_c[r],
            pressure_kpa=batch.pressure_kpa[r],
            incident_id=record_incident[r],
            distance_m=match.distance_m[r],
            bearing_deg=match.bearing_deg[r],
            extra=batch.extra[r],
        )
        new = await insert_emergency(conn, rows)
        new_records = np.unique(r[new])
        await upsert_vehicles(
            conn,
            self.kind.value,
            batch.vehicle_id[new_records],
            batch.ts_us[new_records],
            batch.lat[new_records],
            batch.lon[new_records],
            batch.received_us[new_records],
        )
        # Only new readings in an incident that is still open raise alerts.
        alerting = new[record_open[r[new]]]
        exceedances = incident_exceedances(
            vehicle_id=rows.vehicle_id[alerting],
            ts_us=rows.ts_us[alerting],
            substance=rows.substance[alerting],
            value_ppm=value_ppm[alerting],
            value_mgm3=value_mgm3[alerting],
            incident_id=rows.incident_id[alerting],
            distance_m=rows.distance_m[alerting],
            bearing_deg=rows.bearing_deg[alerting],
            tiers=self._tiers,
        )
        return Outcome(len(batch), int(new_records.shape[0]), exceedances)

    def committed(self, outcome: Outcome) -> None:
        """Nothing to carry forward: tiers apply per reading."""

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome:
        """Nothing falls due without input: tiers apply per reading as it arrives."""
        return Outcome(0, 0)
