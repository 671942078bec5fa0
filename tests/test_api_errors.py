"""Bad input answers 4xx with the one documented error body, before it reaches PostgreSQL.

Each case here answered 500 (or an undocumented body) before: ids and cursors beyond their
columns, NUL and lone surrogates in text, times that overflow when converted to UTC, ring
radii that overflow, non-finite numbers in JSON bodies, unknown routes and wrong methods.
Cases are grouped per test (one database each), and each failure names its request.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from telemetry.web import ERROR_CODES, ErrorBody

BIG = "99999999999999999999"
INT64_OVER = str(2**63)
INT32_OVER = str(2**31)
JSON = {"content-type": "application/json"}
INCIDENT = {"name": "leak", "lat": 24.0, "lon": 118.0, "by": "duty"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``response`` is ``status`` with the documented error body and ``code``."""
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, (request, response.text)
    assert response.headers["content-type"] == "application/json", request
    body: dict[str, Any] = response.json()
    ErrorBody.model_validate(body)
    assert set(body) <= {"error", "detail", "errors"}, request
    assert body["error"] == code == ERROR_CODES[status][0], request
    return body


def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# --- ids and cursors beyond their columns ---------------------------------------------------


async def test_ids_beyond_bigint_are_invalid(client: httpx.AsyncClient) -> None:
    for path in [
        f"/api/v1/alerts/{BIG}",
        f"/api/v1/alerts/{INT64_OVER}",
        f"/api/v1/segments/{INT64_OVER}",
        f"/api/v1/incidents/{INT64_OVER}",
        f"/api/v1/incidents/{BIG}/assessment",
        f"/api/v1/incidents/{BIG}/assessment.geojson",
        f"/api/v1/alerts?segment={BIG}",
        f"/api/v1/dead-letters?before_id={INT64_OVER}",
        f"/api/v1/incidents?before_id={INT64_OVER}",
        f"/api/v1/remote-sensing/stats?by=segment&segment={INT64_OVER}",
    ]:
        body = assert_error(await client.get(path), 422, "invalid")

        assert body["errors"][0]["type"] == "less_than_equal"


async def test_actions_on_ids_beyond_their_column_are_invalid(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("POST", f"/api/v1/alerts/{BIG}/ack"),
        ("POST", f"/api/v1/alerts/{INT64_OVER}/resolve"),
        ("POST", f"/api/v1/incidents/{BIG}/close"),
        ("PUT", f"/api/v1/remote-sensing/gates/{INT32_OVER}"),  # an integer column
        ("PUT", f"/api/v1/emergency/tiers/{INT32_OVER}"),
    ]:
        response = await client.request(method, path, json={"by": "duty"})

        assert_error(response, 422, "invalid")


async def test_cursors_out_of_range_are_invalid(client: httpx.AsyncClient) -> None:
    for path, raw in [
        ("/api/v1/alerts", f"alerts:{BIG}"),
        ("/api/v1/alerts", "alerts:²"),  # a digit to str.isdigit, not to int()
        ("/api/v1/alerts", "alerts:0"),
        ("/api/v1/high-emitters", f"high-emitters:2025-06-01T08:00:00+00:00|{BIG}"),
        ("/api/v1/high-emitters", "high-emitters:2025-06-01T08:00:00+00:00|¹"),
        ("/api/v1/high-emitters", "high-emitters:0001-01-01T00:00:00+14:00|1"),
    ]:
        response = await client.get(path, params={"cursor": cursor(raw)})

        assert "invalid cursor" in assert_error(response, 422, "invalid")["detail"]


# --- text PostgreSQL cannot store -----------------------------------------------------------


async def test_nul_in_paths_and_queries_is_invalid(client: httpx.AsyncClient) -> None:
    for path in [
        "/api/v1/plates/%00",
        "/api/v1/plates/A%00B",
        "/api/v1/vehicles/%00/track",
        "/api/v1/alerts?vehicle=%00",
        "/api/v1/alerts?pollutant=pm%0025",
        "/api/v1/alerts?cursor=%00",
        "/api/v1/vehicles?after=%00",
        "/api/v1/dead-letters?reason=%00",
        "/api/v1/remote-sensing/stats?site=%00",
        "/api/v1/incidents/1/assessment?substance=%00",
        "/api/v1/incidents/1/assessment?rings_km=1,%00",
    ]:
        assert_error(await client.get(path), 422, "invalid")


async def test_nul_in_json_bodies_is_invalid(client: httpx.AsyncClient) -> None:
    for path, body in [
        ("/api/v1/incidents", INCIDENT | {"name": "le\u0000ak"}),
        ("/api/v1/incidents", INCIDENT | {"suspected_substances": ["h2s\u0000"]}),
        ("/api/v1/incidents", INCIDENT | {"note": "\u0000"}),
        ("/api/v1/alerts/1/ack", {"by": "\u0000"}),
        ("/api/v1/incidents/1/close", {"by": "duty", "note": "a\u0000"}),
    ]:
        assert_error(await client.post(path, json=body), 422, "invalid")


async def test_lone_surrogates_in_json_bodies_are_invalid(client: httpx.AsyncClient) -> None:
    for text in [
        '{"name": "\\ud800", "lat": 24, "lon": 118, "by": "duty"}',
        # an unknown field named by a lone surrogate must not break the error body either
        '{"name": "leak", "lat": 24, "lon": 118, "by": "duty", "\\udfff": 1}',
    ]:
        response = await client.post("/api/v1/incidents", content=text, headers=JSON)

        assert_error(response, 422, "invalid")


# --- numbers and times that overflow --------------------------------------------------------


async def test_ring_radii_beyond_the_earth_are_invalid(client: httpx.AsyncClient) -> None:
    for rings in ["1e308,1e309", "1e308", "inf", "nan", "1,nan", "0.5,20001"]:
        for suffix in ("assessment", "assessment.geojson"):
            response = await client.get(f"/api/v1/incidents/1/{suffix}", params={"rings_km": rings})

            assert "rings_km" in assert_error(response, 422, "invalid")["detail"]


#: A body per route with a number field, ``{n}`` standing for the number. Sent as text:
#: Python's JSON parser reads these non-standard numbers, but no client library writes them.
NUMBER_BODIES = [
    (
        "POST",
        "/api/v1/thresholds",
        '{"kind": "walkthrough", "pollutant": "pm25", "limit_value": {n}, "unit": "ug/m3",'
        ' "averaging": "24h", "source": "test", "effective_from": "2030-01-01"}',
    ),
    ("POST", "/api/v1/incidents", '{"name": "leak", "lat": {n}, "lon": 118, "by": "duty"}'),
    (
        "POST",
        "/api/v1/incidents",
        '{"name": "leak", "lat": 24, "lon": 118, "radius_m": {n}, "by": "duty"}',
    ),
    (
        "PUT",
        "/api/v1/remote-sensing/gates/1",
        '{"min_value": {n}, "max_value": null, "source": "test", "confirmed": true}',
    ),
    (
        "PUT",
        "/api/v1/emergency/tiers/1",
        '{"limit_value": {n}, "unit": "ppm", "severity": "warning", "source": "test",'
        ' "confirmed": true}',
    ),
    (
        "POST",
        "/api/v1/remote-sensing/limits",
        '{"fuel_type": "diesel", "pollutant": "opacity", "limit_value": {n}, "unit": "%",'
        ' "source": "test", "confirmed": true, "effective_from": "2030-01-01"}',
    ),
]


async def test_non_finite_numbers_in_json_bodies_are_invalid(client: httpx.AsyncClient) -> None:
    for number in ["NaN", "Infinity", "-Infinity", "1e309"]:
        for method, path, template in NUMBER_BODIES:
            text = template.replace("{n}", number)
            response = await client.request(method, path, content=text, headers=JSON)

            assert_error(response, 422, "invalid")


async def test_limits_beyond_any_concentration_are_invalid(client: httpx.AsyncClient) -> None:
    # Converting 1e308 between units overflows; (C - S) / S over 5e-324 does.
    limits = [body for body in NUMBER_BODIES if '"limit_value": {n}' in body[2]]
    assert len(limits) == 3
    for number in ["1e308", "5e-324", "0"]:
        for method, path, template in limits:
            text = template.replace("{n}", number)
            response = await client.request(method, path, content=text, headers=JSON)

            assert_error(response, 422, "invalid")


async def test_times_that_overflow_are_invalid(client: httpx.AsyncClient) -> None:
    for path in [
        "/api/v1/alerts",
        "/api/v1/vehicles/wt-01/track",
        "/api/v1/plates/A12345",
        "/api/v1/high-emitters",
        "/api/v1/remote-sensing/stats",
    ]:
        for params in [
            {"since": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
            {"until": "9999-12-31T23:59:59-14:00"},  # after year 9999 in UTC
            {"since": "9999-12-31T00:00:00Z"},  # a day's window from here overflows
        ]:
            assert_error(await client.get(path, params=params), 422, "invalid")
    body = INCIDENT | {"started_at": "0001-01-01T00:00:00+14:00"}
    assert_error(await client.post("/api/v1/incidents", json=body), 422, "invalid")


# --- the framework's own answers ------------------------------------------------------------


async def test_unknown_routes_answer_not_found(client: httpx.AsyncClient) -> None:
    for path in ["/nowhere", "/api/v1/nowhere", "/api/v1/alerts/1/nowhere"]:
        body = assert_error(await client.get(path), 404, "not_found")

        assert path in body["detail"]


async def test_a_method_the_route_lacks_answers_method_not_allowed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/api/v1/alerts/1")

    body = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    assert body["detail"].endswith("allowed: GET")


async def test_unreadable_bodies_are_invalid_or_bad_requests(client: httpx.AsyncClient) -> None:
    malformed = await client.post("/api/v1/incidents", content=b'{"name": ', headers=JSON)
    not_utf8 = await client.post("/api/v1/incidents", content=b'{"name": "\xff"}', headers=JSON)

    assert assert_error(malformed, 422, "invalid")["errors"][0]["type"] == "json_invalid"
    assert_error(not_utf8, 400, "bad_request")


async def test_validation_errors_list_each_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/alerts", params={"limit": 0, "colour": "red"})

    body = assert_error(response, 422, "invalid")
    assert {(tuple(e["loc"]), e["type"]) for e in body["errors"]} == {
        (("query", "limit"), "greater_than_equal"),
        (("query", "colour"), "extra_forbidden"),
    }
    assert "query.limit" in body["detail"]


# --- the OpenAPI document -------------------------------------------------------------------


async def test_openapi_declares_the_error_body_on_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]

    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["properties"]["error"]["enum"]) == {
        code for code, _ in ERROR_CODES.values()
    }
    for path, operations in document["paths"].items():
        if path in ("/healthz", "/metrics"):
            continue
        for method, operation in operations.items():
            declared = {
                int(status): response
                for status, response in operation["responses"].items()
                if int(status) >= 400
            }
            expected = {503}
            if "{" in path or "parameters" in operation or "requestBody" in operation:
                expected.add(422)
            if "{" in path:
                expected.add(404)
            if "requestBody" in operation:
                expected.add(400)
            if path != "/api/v1/auth/token":
                expected.add(401)
                assert operation["security"] == [{"bearer": []}], (method, path)
            assert expected <= set(declared), (method, path)
            for status, response in declared.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
                assert f"`{ERROR_CODES[status][0]}`" in response["description"]


async def test_openapi_documents_conflicts_and_cross_field_rules(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    schemas = document["components"]["schemas"]

    for path in [
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/alerts/{alert_id}/resolve",
        "/api/v1/incidents/{incident_id}/close",
        "/api/v1/thresholds",
        "/api/v1/remote-sensing/limits",
        "/api/v1/emergency/tiers",
    ]:
        assert "409" in paths[path]["post"]["responses"], path
    assert "effective_to" in schemas["ThresholdCreate"]["description"]
    assert "effective_to" in schemas["LimitCreate"]["description"]
    assert "max_value" in schemas["GateUpdate"]["description"]
    stats = {p["name"]: p for p in paths["/api/v1/remote-sensing/stats"]["get"]["parameters"]}
    assert "by=segment" in stats["segment"]["description"]
    assert "before until" in stats["since"]["description"]
    assessment = paths["/api/v1/incidents/{incident_id}/assessment"]["get"]["parameters"]
    rings = next(p for p in assessment if p["name"] == "rings_km")
    assert "increasing" in rings["description"]
