"""Property-based conformance of the whole HTTP API to its own OpenAPI document.

Schemathesis derives requests from the app's OpenAPI document (valid ones, boundary values,
invalid ones and undeclared methods) and sends them over real HTTP to the app, served by uvicorn
with ingest disabled on a fresh migrated database holding a row of each kind, as an admin (whose
token every request carries, but for logging out, which gets a token of its own each time, so
that the run keeps its token). Every answer must be documented: no server error, a status code
the operation declares, a body that matches the declared schema, 405 with ``Allow`` for an
undeclared method, and every error (undeclared methods included) in the one error body.
Examples are bounded and derandomized, so that the run is repeatable and stays within the
suite's time budget.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import hypothesis
import pytest
import schemathesis
import uvicorn
from conftest import _clone, _drop, _url_for, free_port
from schemathesis import checks
from support import bearer, grant_token

from api.app import create_app
from telemetry.settings import Settings
from telemetry.web import ERROR_CODES, ErrorBody

#: Random examples per operation; the coverage phase adds its deterministic boundary values
#: (limits and one past them, wrong types, missing fields, undeclared methods) on top.
MAX_EXAMPLES = 25


def error_body(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every error answer, documented for the operation or not, is the one error body with the
    code of its status."""
    if response.status_code < 400:
        return
    body = ErrorBody.model_validate(response.json())
    assert body.error == ERROR_CODES[response.status_code][0], response.text


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.unsupported_method,
    error_body,
]


async def _seed(database_url: str) -> None:
    """One row of each kind the routes read, so that the id-1 paths reach their happy path."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        segment_id = await conn.fetchval(
            "INSERT INTO road_segments (source, road_ref, seq, name, highway, length_m, coords,"
            " min_lon, min_lat, max_lon, max_lat) VALUES ('test', 'way/1', 0, 'Hubin Road',"
            " 'primary', 30.4, $1, 118.0, 24.0, 118.0003, 24.0) RETURNING id",
            json.dumps([[118.0, 24.0], [118.0003, 24.0]]),
        )
        await conn.execute(
            "INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon,"
            " last_received_at, readings) VALUES ('0', 'walkthrough', $1, 24.0, 118.0001, $1, 1)",
            now,
        )
        await conn.execute(
            "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, pm25,"
            " segment_id) VALUES ('0', $1, $1, 24.0, 118.0001, 30, $2)",
            now - timedelta(minutes=5),
            segment_id,
        )
        await conn.execute(
            "INSERT INTO alerts (kind, subject, segment_id, pollutant, rule, limit_value, unit,"
            " averaging, source, first_seen, last_seen, last_value, peak_value, peak_multiple,"
            " vehicles) VALUES ('walkthrough', 'segment:1', $1, 'pm25', 'limit', 75, 'ug/m3',"
            " '24h', 'GB 3095-2012', $2, $2, 90, 120, 0.6, ARRAY['0'])",
            segment_id,
            now,
        )
        await conn.execute(
            "INSERT INTO dead_letters (received_at, topic, kind, vehicle_id, reason, detail,"
            " payload) VALUES ($1, 'telemetry/walkthrough/0', 'walkthrough', '0', 'schema',"
            " 'bad', '\\x7b7d'::bytea)",
            now,
        )
        await conn.execute(
            "INSERT INTO rs_passes (vehicle_id, ts, lane, received_at, lat, lon, site_id,"
            " plate, fuel_type, speed_kmh, co_pct, valid, co_over) VALUES ('rs-01', $1, 1, $1,"
            " 24.0, 118.0, 'A110108001', '0', 'gasoline', 30, 0.1, true, false)",
            now - timedelta(minutes=5),
        )
        await conn.execute(
            "INSERT INTO incidents (name, lat, lon, started_at, radius_m, opened_by)"
            " VALUES ('leak', 24.0, 118.0, $1, 5000, 'duty')",
            now - timedelta(hours=1),
        )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def shared_database_url(template_db: str) -> Iterator[str]:
    """One fresh migrated database shared by every operation: the ``database_url`` fixture's
    own cloning at module scope, since a clone and a server per operation took as long as
    testing it. Operations see each other's writes; every answer must conform regardless."""
    name = f"telemetry_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_clone(template_db, name))
    yield _url_for(name)
    asyncio.run(_drop(name))


@pytest.fixture(scope="module")
def admin_token(shared_database_url: str) -> str:
    """The token every operation is called with (an admin may call all of them)."""
    return asyncio.run(grant_token(shared_database_url, "admin", "schemathesis-admin"))


@pytest.fixture(scope="module")
def base_url(shared_database_url: str) -> Iterator[str]:
    """The app served over HTTP on a free port (ingest disabled), with a few rows seeded."""
    asyncio.run(_seed(shared_database_url))
    port = free_port()
    app = create_app(Settings(database_url=shared_database_url, ingest_enabled=False))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


#: The document the app serves; building the app connects to nothing. The event stream never
#: ends, so it is tested on its own (tests/test_api_events.py).
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="postgresql://unused/", ingest_enabled=False)).openapi()
).exclude(path="/api/v1/events", method="GET")


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_answer_is_documented(
    base_url: str, admin_token: str, shared_database_url: str, case: schemathesis.Case
) -> None:
    token = admin_token
    if case.path == "/api/v1/auth/logout":
        token = asyncio.run(grant_token(shared_database_url, "admin", "schemathesis-admin"))
    case.call_and_validate(base_url=base_url, checks=CHECKS, headers=bearer(token))
