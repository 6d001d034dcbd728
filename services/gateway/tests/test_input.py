"""What the gateway answers to input it cannot take: each a 4xx problem saying why."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from wharf_auth import admin
from wharf_auth.settings import AuthSettings
from wharf_common.events import ShipmentStatus
from wharf_common.logs import JsonFormatter
from wharf_gateway.edge import MAX_JSON_DEPTH

PASSWORD = "correct horse battery staple"
ZERO_ID = "00000000-0000-0000-0000-000000000000"
Signup = Callable[..., Awaitable[dict[str, Any]]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def problem_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == response.status
    return body


async def test_a_body_not_sent_as_json_gets_415(gateway: Any, http: aiohttp.ClientSession) -> None:
    url = f"{gateway.url}/v1/tenants"
    body = json.dumps({"name": ""}).encode()
    refused = [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json; charset=latin-1"},
    ]
    accepted = [
        {"Content-Type": "application/json"},
        {"Content-Type": "Application/JSON; charset=UTF-8"},
        {"Content-Type": "application/merge-patch+json"},
    ]

    for headers in refused:
        async with http.post(url, data=body, headers=headers) as response:
            assert response.status == 415, headers
            await problem_of(response)
    async with http.post(url, data=body, skip_auto_headers=["Content-Type"]) as response:
        assert response.status == 415
        assert "no Content-Type" in (await problem_of(response))["detail"]
    for headers in accepted:
        async with http.post(url, data=body, headers=headers) as response:
            # Past the content type: the fields themselves are what is wrong.
            assert response.status == 422, headers


async def test_json_without_nan_or_infinity(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    url = f"{gateway.url}/v1/shipments"
    headers = {**bearer(tenant["access_token"]), "Content-Type": "application/json"}
    details = []

    for value in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = f'{{"carrier": "ups", "tracking_number": "1Z1", "metadata": {{"kg": {value}}}}}'
        async with http.post(url, data=body, headers=headers) as response:
            assert response.status == 400, value
            details.append((await problem_of(response))["detail"])

    assert details == [
        "the body holds NaN, which JSON does not allow",
        "the body holds Infinity, which JSON does not allow",
        "the body holds -Infinity, which JSON does not allow",
        "the body holds a number too large for a double",
    ]


async def test_nesting_past_the_limit_is_named_as_such(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/v1/tenants"
    headers = {"Content-Type": "application/json"}
    # Deeper than the parser itself will go, and unfinished: still a nesting problem.
    body = "[" * 100_000

    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 400
        detail = (await problem_of(response))["detail"]

    assert detail == f"the body is nested deeper than {MAX_JSON_DEPTH} levels"


async def test_an_unknown_shipment_status_filter_gets_422_listing_the_statuses(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()

    async with http.get(
        f"{gateway.url}/v1/shipments",
        params={"status": "bogus"},
        headers=bearer(tenant["access_token"]),
    ) as response:
        assert response.status == 422
        problem = await problem_of(response)

    assert problem["detail"] == "invalid fields: status"
    [error] = problem["errors"]
    assert error["field"] == "status"
    assert all(f"'{status}'" in error["message"] for status in ShipmentStatus)


async def test_a_log_search_ending_before_it_starts_names_the_parameter(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup, auth_settings: AuthSettings
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    login = {"email": tenant["email"], "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        ops = bearer((await response.json())["access_token"])
    moment = "2026-01-01T00:00:00Z"

    async with http.get(
        f"{gateway.url}/v1/logs", params={"since": moment, "until": moment}, headers=ops
    ) as response:
        assert response.status == 422
        problem = await problem_of(response)

    assert problem["detail"] == "invalid fields: until"
    assert problem["errors"] == [
        {"field": "until", "message": "Value error, until must be after since"}
    ]


async def test_webhook_delivery_history_checks_its_page_parameters(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    url = f"{gateway.url}/v1/webhooks/{ZERO_ID}/deliveries"
    fields = []

    for params in ({"limit": "-1"}, {"limit": "501"}, {"cursor": "not a cursor!"}):
        async with http.get(url, params=params, headers=bearer(tenant["access_token"])) as r:
            assert r.status == 422, params
            fields.append([error["field"] for error in (await problem_of(r))["errors"]])
    async with http.get(f"{gateway.url}/openapi.json") as response:
        operation = (await response.json())["paths"]["/v1/webhooks/{id}/deliveries"]["get"]

    assert fields == [["limit"], ["limit"], ["cursor"]]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {
        "limit",
        "cursor",
    }


async def test_signed_object_problems_have_a_type(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/v1/objects/t/a.txt") as response:
        assert response.status == 403
        await problem_of(response)


async def test_every_kind_of_429_says_when_to_retry(
    auth: Any, start_gateway: Any, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        anonymous_per_second=0.001,
        anonymous_burst=6,
        rate_limit_per_second=0.001,
        rate_limit_burst=2,
    )
    email = "admin@example.com"
    signup = {"name": "Acme", "admin_email": email, "admin_password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/tenants", json=signup) as response:
        assert response.status == 201
    token = f"{gateway.url}/v1/auth/token"
    async with http.post(token, json={"email": email, "password": PASSWORD}) as response:
        access = bearer((await response.json())["access_token"])
    for _ in range(3):
        async with http.post(token, json={"email": email, "password": "wrong"}) as response:
            assert response.status == 401
    refusals: dict[str, str | None] = {}

    # Auth's login throttle, relayed over the bus: the sixth anonymous request.
    async with http.post(token, json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 429
        refusals["login throttle"] = response.headers.get("Retry-After")
    # The seventh: the per-address bucket is empty.
    async with http.post(token, json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 429
        refusals["per address"] = response.headers.get("Retry-After")
    # The tenant's bucket of two (carrier-ingest is not running: 503 until then);
    # the task then remembers the refusal for a moment rather than ask Redis.
    statuses = []
    for name in ("", "", "per tenant", "per tenant, again"):
        async with http.get(f"{gateway.url}/v1/shipments", headers=access) as response:
            statuses.append(response.status)
            if name:
                refusals[name] = response.headers.get("Retry-After")

    assert statuses == [503, 503, 429, 429]
    assert len(refusals) == 4
    assert all(value is not None and int(value) >= 1 for value in refusals.values()), refusals


async def test_an_over_long_header_never_reaches_the_logs(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    async with http.post(
        f"{gateway.url}/v1/api-keys",
        json={"name": "erp", "scopes": ["shipments:read"]},
        headers=bearer(tenant["access_token"]),
    ) as response:
        key = (await response.json())["key"]
    request = (
        f"GET /v1/shipments HTTP/1.1\r\nHost: gateway\r\nX-API-Key: {key}{' ' * 9000}x\r\n\r\n"
    ).encode()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        host, port = gateway.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    assert answer.startswith(b"HTTP/1.0 400")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = [r for r in records if r["logger"] == "aiohttp.server"]
    assert [(r["level"], r["message"]) for r in refused] == [
        ("WARNING", "refused a malformed HTTP request: LineTooLong (status 400)")
    ]
    assert key not in stream.getvalue()


async def raw_request(gateway: Any, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send bytes aiohttp's client would not send; return the status and the problem."""
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    length = f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    writer.write(head + length + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    problem = json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")
    return int(status_line.split()[1]), problem


async def test_headers_that_are_not_ascii_get_400_naming_them(gateway: Any, signup: Signup) -> None:
    tenant = await signup()
    token = tenant["access_token"].encode()
    body = json.dumps({"template": "note", "data": {}}).encode()
    post = b"POST /v1/documents HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"

    key = await raw_request(
        gateway,
        post + b"Authorization: Bearer " + token + b"\r\nIdempotency-Key: caf\xe9\r\n",
        body,
    )
    api_key = await raw_request(gateway, post + b"X-API-Key: caf\xe9\r\n", body)
    bearer_ = await raw_request(gateway, post + b"Authorization: Bearer caf\xe9\r\n", body)
    too_long = await raw_request(
        gateway,
        post + b"Authorization: Bearer " + token + b"\r\nIdempotency-Key: " + b"k" * 256 + b"\r\n",
        body,
    )

    assert key[0] == api_key[0] == bearer_[0] == too_long[0] == 400
    assert "Idempotency-Key header must be printable ASCII" in key[1]["detail"]
    assert "X-API-Key header" in api_key[1]["detail"]
    assert "Authorization header" in bearer_[1]["detail"]
    assert "1 to 255" in too_long[1]["detail"]


async def test_numbers_are_json_numbers_not_booleans_or_strings(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup, auth_settings: AuthSettings
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    login = {"email": tenant["email"], "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        ops = bearer((await response.json())["access_token"])
    scale = f"{gateway.url}/v1/ops/services/documents/tasks"
    refused: list[tuple[str, str, Any, str]] = [
        ("PUT", scale, {"count": True}, "count"),
        ("PUT", scale, {"count": "2"}, "count"),
        ("POST", f"{gateway.url}/v1/uploads", {"size": True}, "size"),
        ("POST", f"{gateway.url}/v1/documents", {"template": "a", "version": "1"}, "version"),
    ]

    for method, url, body, field in refused:
        async with http.request(method, url, json=body, headers=ops) as response:
            assert response.status == 422, (body, await response.text())
            problem = await problem_of(response)
            assert problem["detail"] == f"invalid fields: {field}", body


async def test_times_outside_years_1_to_9999_get_422_naming_the_field(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup, auth_settings: AuthSettings
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    login = {"email": tenant["email"], "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        ops = bearer((await response.json())["access_token"])
    early, late = "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-01:00"

    async with http.post(
        f"{gateway.url}/v1/webhooks/{ZERO_ID}/replay", json={"since": early}, headers=ops
    ) as response:
        assert response.status == 422
        replay = await problem_of(response)
    async with http.get(f"{gateway.url}/v1/logs", params={"until": late}, headers=ops) as response:
        assert response.status == 422
        logs = await problem_of(response)

    assert replay["detail"] == "invalid fields: since"
    assert logs["detail"] == "invalid fields: until"
    assert "between years 1 and 9999" in logs["errors"][0]["message"]
