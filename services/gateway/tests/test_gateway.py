from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
from openapi_spec_validator import validate

from wharf_auth import admin, keys
from wharf_auth.settings import AuthSettings
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.logs import JsonFormatter
from wharf_gateway import models
from wharf_gateway.routes import table

PASSWORD = "correct horse battery staple"
Signup = Callable[..., Awaitable[dict[str, Any]]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_signup_token_and_an_authenticated_call(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    admin_ = await signup()
    user = {"email": "member@example.com", "password": PASSWORD, "roles": ["member"]}

    async with http.post(
        f"{gateway.url}/v1/users", json=user, headers=bearer(admin_["access_token"])
    ) as response:
        assert response.status == 201
        assert (await response.json())["roles"] == ["member"]


async def test_request_id_is_returned_and_created(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        f"{gateway.url}/v1/shipments", headers={"X-Request-ID": "abc-123"}
    ) as response:
        assert response.status == 401
        assert response.headers["X-Request-ID"] == "abc-123"
        assert response.content_type == "application/problem+json"
    async with http.get(f"{gateway.url}/openapi.json") as response:
        assert len(response.headers["X-Request-ID"]) == 32


async def test_refresh_rotation_reuse_and_logout(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    first = await signup()
    url = f"{gateway.url}/v1/auth"

    async with http.post(f"{url}/refresh", json={"refresh_token": first["refresh_token"]}) as r:
        assert r.status == 200
        second = await r.json()
    async with http.post(f"{url}/refresh", json={"refresh_token": first["refresh_token"]}) as r:
        assert r.status == 401
    async with http.post(f"{url}/refresh", json={"refresh_token": second["refresh_token"]}) as r:
        assert r.status == 401

    third = await signup("other@example.com")
    async with http.post(f"{url}/logout", json={"refresh_token": third["refresh_token"]}) as r:
        assert r.status == 200
    async with http.post(f"{url}/refresh", json={"refresh_token": third["refresh_token"]}) as r:
        assert r.status == 401


async def test_bad_tokens_get_401_and_the_wrong_role_403(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup, auth_settings: AuthSettings
) -> None:
    tenant = await signup()
    conn = await asyncpg.connect(auth_settings.database_url)
    try:
        vault = keys.KeyVault(auth_settings.sealing_keys())
        kid, private = await keys.active_key(conn, vault)
        jwk = json.loads((await keys.jwks(conn))["keys"][0])
    finally:
        await conn.close()
    now = int(time.time())
    claims = {"iss": "wharf", "sub": "u", "tenant": tenant["tenant_id"], "roles": ["admin"]}
    expired = keys.sign(kid, private, {**claims, "iat": now - 3600, "exp": now - 1800})
    head, payload, signature = tenant["access_token"].split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered = f"{head}.{b64(json.dumps({**forged, 'roles': ['ops']}).encode())}.{signature}"
    body = b64(json.dumps({**claims, "iat": now, "exp": now + 600}).encode())
    none = f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{body}."
    hs_head = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    secret = base64.urlsafe_b64decode(jwk["x"] + "==")
    mac = hmac.new(secret, f"{hs_head}.{body}".encode(), hashlib.sha256).digest()
    hs256 = f"{hs_head}.{body}.{b64(mac)}"

    for token in (expired, tampered, none, hs256, "not-a-jwt"):
        async with http.get(f"{gateway.url}/v1/shipments", headers=bearer(token)) as response:
            assert response.status == 401, token

    member = {"email": "m@example.com", "password": PASSWORD, "roles": ["member"]}
    async with http.post(
        f"{gateway.url}/v1/users", json=member, headers=bearer(tenant["access_token"])
    ) as response:
        assert response.status == 201
    login = {"email": "m@example.com", "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        member_token = (await response.json())["access_token"]
    async with http.post(
        f"{gateway.url}/v1/api-keys",
        json={"name": "k", "scopes": ["shipments:read"]},
        headers=bearer(member_token),
    ) as response:
        assert response.status == 403
    async with http.get(f"{gateway.url}/v1/logs", headers=bearer(member_token)) as response:
        assert response.status == 403


async def test_key_rotation_logs_nobody_out(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup, auth_settings: AuthSettings
) -> None:
    before = await signup()

    new_kid = await admin.rotate_keys(
        auth_settings.database_url,
        auth_settings.sealing_keys(),
        auth_settings.access_token_ttl,
    )
    login = {"email": before["email"], "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        after = await response.json()

    for token in (before["access_token"], after["access_token"]):
        async with http.get(f"{gateway.url}/v1/shipments", headers=bearer(token)) as response:
            assert response.status == 503
    async with http.get(f"{gateway.url}/.well-known/jwks.json") as response:
        kids = {key["kid"] for key in (await response.json())["keys"]}
    assert new_kid in kids
    assert len(kids) == 2


async def test_api_key_scopes_and_revocation(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    other = await signup("other@example.com")
    async with http.post(
        f"{gateway.url}/v1/api-keys",
        json={"name": "reader", "scopes": ["shipments:read"]},
        headers=bearer(tenant["access_token"]),
    ) as response:
        assert response.status == 201
        created = await response.json()

    async with http.get(
        f"{gateway.url}/v1/shipments", headers={"Authorization": f"ApiKey {created['key']}"}
    ) as response:
        assert response.status == 503
    async with http.post(
        f"{gateway.url}/v1/shipments", json={}, headers={"X-API-Key": created["key"]}
    ) as response:
        assert response.status == 403
    async with http.post(
        f"{gateway.url}/v1/users", json={}, headers={"X-API-Key": created["key"]}
    ) as response:
        assert response.status == 403

    revoke = f"{gateway.url}/v1/api-keys/{created['id']}"
    async with http.delete(revoke, headers=bearer(other["access_token"])) as response:
        assert response.status == 404
    async with http.delete(revoke, headers=bearer(tenant["access_token"])) as response:
        assert response.status == 200
    await asyncio.sleep(0.3)
    async with http.get(
        f"{gateway.url}/v1/shipments", headers={"X-API-Key": created["key"]}
    ) as response:
        assert response.status == 401


async def test_failed_logins_look_alike_then_get_429(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    await signup()
    url = f"{gateway.url}/v1/auth/token"
    answers = []
    for email in ("nobody@example.com", "admin@example.com"):
        async with http.post(url, json={"email": email, "password": "wrong pass"}) as response:
            assert response.status == 401
            answers.append(await response.json())
    assert answers[0] == answers[1]

    for _ in range(2):
        async with http.post(url, json={"email": "admin@example.com", "password": "nope"}) as r:
            assert r.status == 401
    async with http.post(url, json={"email": "admin@example.com", "password": PASSWORD}) as r:
        assert r.status == 429
        assert int(r.headers["Retry-After"]) >= 1


async def test_rate_limit_is_shared_by_two_gateways(
    auth: Any, start_gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    limits = {"rate_limit_per_second": 0.01, "rate_limit_burst": 4}
    first, second = await start_gateway(**limits), await start_gateway(**limits)

    statuses = []
    for gateway in (first, second, first, second, first):
        async with http.get(
            f"{gateway.url}/v1/shipments", headers=bearer(tenant["access_token"])
        ) as response:
            statuses.append(response.status)
            retry_after = response.headers.get("Retry-After")

    assert statuses == [503, 503, 503, 503, 429]
    assert retry_after is not None and int(retry_after) >= 1


async def test_oversized_body_gets_413(gateway: Any, http: aiohttp.ClientSession) -> None:
    body = {"name": "x" * (2 * 1024 * 1024), "admin_email": "a@b.co", "admin_password": "p"}
    async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
        assert response.status == 413
        assert response.content_type == "application/problem+json"


async def test_invalid_fields_are_named_in_a_422(gateway: Any, http: aiohttp.ClientSession) -> None:
    body = {"name": "", "admin_email": "not-an-email", "admin_password": "short", "x": 1}
    async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
        assert response.status == 422
        problem = await response.json()
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {"name", "admin_email", "admin_password", "x"}


async def test_deeply_nested_json_gets_400(gateway: Any, http: aiohttp.ClientSession) -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"a": deep}
    body = {"name": deep, "admin_email": "a@example.com", "admin_password": "p" * 12}

    async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        assert "nested deeper" in (await response.json())["detail"]


async def test_text_no_service_can_store_gets_422(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    user = {"email": "m@example.com", "password": f"{PASSWORD}\x00", "roles": ["member"]}
    async with http.post(
        f"{gateway.url}/v1/users", json=user, headers=bearer(tenant["access_token"])
    ) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["password"]
    surrogate = b'{"name": "\\ud800", "admin_email": "a@b.co", "admin_password": "p"}'
    async with http.post(
        f"{gateway.url}/v1/tenants", data=surrogate, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["name"]
    async with http.get(
        f"{gateway.url}/v1/shipments?status=%00", headers=bearer(tenant["access_token"])
    ) as response:
        assert response.status == 422


async def test_malformed_template_upload_gets_400(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    body = b'--b\r\nContent-Disposition: form-data; name="\xc3\x9b\x13"\r\n\r\nx\r\n--b--\r\n'
    headers = {**bearer(tenant["access_token"]), "Content-Type": "multipart/form-data; boundary=b"}
    async with http.post(f"{gateway.url}/v1/templates", data=body, headers=headers) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"


# A valid body for each route that needs one, so a route whose service is
# down is known to answer 503, not to fail validation first.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/ops/services/{name}/tasks"): {"count": 1},
    ("POST", "/v1/documents"): {"template": "label"},
    ("POST", "/v1/document-batches"): {"template": "label", "items": [{"data": {}}]},
    ("POST", "/v1/webhooks"): {"url": "https://hooks.example.com/", "event_types": ["x"]},
    ("POST", "/v1/webhooks/{id}/replay"): {"since": "2026-01-01T00:00:00Z"},
}


async def test_unbuilt_routes_answer_503_problems(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup, auth_settings: AuthSettings
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    login = {"email": tenant["email"], "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        ops = bearer((await response.json())["access_token"])
    async with http.post(
        f"{gateway.url}/v1/api-keys",
        json={"name": "dhl", "scopes": ["carrier:ingest"]},
        headers=ops,
    ) as response:
        carrier = {"X-API-Key": (await response.json())["key"]}

    for route in table({}):
        if route.service in {"auth", "carrier-ingest", "gateway"}:
            continue
        path = route.path.format(
            id="00000000-0000-0000-0000-000000000000", carrier="dhl", name="documents"
        )
        query = {"carrier": "dhl", "tracking_number": "1"} if "tracking" in path else {}
        body = VALID_BODIES.get((route.method, route.path), {})
        headers = carrier if route.access == "carrier" else ops
        payload: dict[str, Any] = {"json": body}
        if route.content_type == "multipart/form-data":
            form = {"name": "label", "html": "<p>label</p>"}
            payload = {"data": aiohttp.FormData(form, default_to_multipart=True)}
        async with http.request(
            route.method, f"{gateway.url}{path}", params=query, headers=headers, **payload
        ) as response:
            assert response.status == 503, (route.method, path)
            assert response.content_type == "application/problem+json"
            assert route.service in (await response.json())["detail"]


async def test_carrier_intake_accepts_while_carrier_ingest_is_down(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    async with http.post(
        f"{gateway.url}/v1/api-keys",
        json={"name": "ups", "scopes": ["carrier:ingest"]},
        headers=bearer(tenant["access_token"]),
    ) as response:
        carrier = {"X-API-Key": (await response.json())["key"]}

    async with http.post(
        f"{gateway.url}/v1/carriers/ups/events", data=b"<raw/>", headers=carrier
    ) as response:
        assert response.status == 202
        accepted = await response.json()
        location = response.headers["Location"]
    async with http.get(
        f"{gateway.url}/v1/shipments", headers=bearer(tenant["access_token"])
    ) as response:
        assert response.status == 503
        assert "carrier-ingest" in (await response.json())["detail"]
    async with http.get(f"{gateway.url}{location}", headers=carrier) as response:
        assert response.status == 503

    stored = gateway.runtime.store.root / tenant["tenant_id"] / "carrier-payloads" / "ups"
    assert [p.name for p in stored.rglob("*") if p.is_file()] == [accepted["ingest_id"]]
    assert location == f"/v1/carriers/ups/events/{accepted['ingest_id']}"
    assert accepted["links"] == {"ingest": location, "tracking_events": []}


async def test_deadline_turns_into_504(
    amqp_url: str, start_gateway: Any, http: aiohttp.ClientSession
) -> None:
    bus = Bus(amqp_url, service="slow-auth")
    await bus.connect()

    async def slow(envelope: Envelope) -> Any:
        await asyncio.sleep(5)

    from wharf_common.rpc import serve

    server = await serve(bus, "wharf.auth.rpc", slow)
    try:
        gateway = await start_gateway(request_timeout=0.5)
        login = {"email": "a@example.com", "password": PASSWORD}
        started = time.monotonic()
        async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
            assert response.status == 504
            assert response.content_type == "application/problem+json"
        assert time.monotonic() - started < 3
    finally:
        await server.stop(timeout=0)
        await bus.close()


async def test_unreachable_auth_gets_503(start_gateway: Any, http: aiohttp.ClientSession) -> None:
    gateway = await start_gateway()
    login = {"email": "a@example.com", "password": PASSWORD}
    async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
        assert response.status == 503
        assert response.content_type == "application/problem+json"


async def test_openapi_document_is_valid_openapi_3_1(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/openapi.json") as response:
        document = await response.json()

    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "/v1/shipments/{id}" in document["paths"]
    paths = document["paths"]
    assert "401" in paths["/v1/auth/token"]["post"]["responses"]
    assert "401" not in paths["/v1/tenants"]["post"]["responses"]
    assert "409" in paths["/v1/tenants"]["post"]["responses"]
    status = paths["/v1/carriers/{carrier}/events/{ingest_id}"]["get"]["responses"]["200"]
    schema = status["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/IngestStatus"}


async def test_openapi_describes_template_form_and_tracking_number_parameter(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/openapi.json") as response:
        document = await response.json()

    body = document["paths"]["/v1/templates"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"]
    form = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(form["properties"]) == {"name", "html", "css", "archive"}
    assert form["required"] == ["name"]
    assert form["properties"]["archive"]["contentMediaType"] == "application/zip"
    events = document["paths"]["/v1/carriers/{carrier}/events"]["post"]
    parameter = next(p for p in events["parameters"] if p["name"] == "tracking_number")
    assert parameter["in"] == "query"
    assert "dpd" in parameter["description"]


async def test_uploads_get_a_signed_put_url_under_the_tenant(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    headers = bearer(tenant["access_token"])
    url = f"{gateway.url}/v1/uploads"
    too_big = {"size": gateway.runtime.settings.max_object_upload_size + 1}

    async with http.post(url, json={"size": 5}, headers=headers) as response:
        assert response.status == 201, await response.text()
        upload = await response.json()
    put = upload["url"].replace(gateway.runtime.settings.public_url, gateway.url)
    async with http.put(put, data=b"[1,2]", headers=upload["headers"]) as response:
        assert response.status == 200
    async with http.post(url, json=too_big, headers=headers) as response:
        assert response.status == 413
    async with http.get(f"{gateway.url}/openapi.json") as response:
        operation = (await response.json())["paths"]["/v1/uploads"]["post"]

    assert upload["ref"].startswith(f"{tenant['tenant_id']}/uploads/")
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "application/json", "If-None-Match": "*"}
    assert await gateway.runtime.store.get(upload["ref"]) == b"[1,2]"
    assert "201" in operation["responses"]


async def test_upload_url_takes_one_body_of_the_declared_size_and_type(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    declared = {"size": 10, "content_type": "application/json"}
    async with http.post(
        f"{gateway.url}/v1/uploads", json=declared, headers=bearer(tenant["access_token"])
    ) as response:
        upload = await response.json()
    put = upload["url"].replace(gateway.runtime.settings.public_url, gateway.url)
    html = upload["headers"] | {"Content-Type": "text/html"}
    answers = []

    for body, sent in [
        (b"[" + b"1," * 7 + b"1]", upload["headers"]),
        (b"[1,2,3,45]", html),
        (b"[1,2,3,45]", upload["headers"]),
        (b"[9,9,9,99]", upload["headers"]),
    ]:
        async with http.put(put, data=body, headers=sent) as response:
            answers.append((response.status, response.content_type))

    assert answers == [
        (413, "application/problem+json"),
        (415, "application/problem+json"),
        (200, "application/octet-stream"),
        (409, "application/problem+json"),
    ]
    assert await gateway.runtime.store.get(upload["ref"]) == b"[1,2,3,45]"


async def test_upload_content_type_must_be_a_header_value(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    answers = []

    for content_type in ["", " text/csv", "text/csv\r\nX-Evil: 1", "text/csv;  q=1"]:
        declared = {"size": 10, "content_type": content_type}
        async with http.post(
            f"{gateway.url}/v1/uploads", json=declared, headers=bearer(tenant["access_token"])
        ) as response:
            answers.append((response.status, response.content_type))

    assert answers == [(422, "application/problem+json")] * 4


async def test_local_objects_are_served_through_signed_urls(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    store = gateway.runtime.store
    upload = await store.signed_upload("t/a.txt", size=5, content_type="text/plain")
    put = upload.url.replace(gateway.runtime.settings.public_url, gateway.url)

    async with http.put(put, data=b"hello", headers=upload.headers) as response:
        assert response.status == 200
    get = (await store.signed_url("t/a.txt")).replace(
        gateway.runtime.settings.public_url, gateway.url
    )
    async with http.get(get) as response:
        assert response.content_type == "text/plain"
        assert await response.read() == b"hello"


async def test_rate_limit_fails_open_without_redis(
    auth: Any, start_gateway: Any, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(redis_url="redis://127.0.0.1:1/0", anonymous_burst=1)
    body = {"name": "Acme", "admin_email": "a@example.com", "admin_password": PASSWORD}

    async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
        assert response.status == 201


async def test_tenant_creation_is_rate_limited_per_address(
    auth: Any, start_gateway: Any, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(anonymous_per_second=0.01, anonymous_burst=1)
    body = {"name": "Acme", "admin_email": "a@example.com", "admin_password": PASSWORD}

    async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
        assert response.status == 201
    async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1


async def test_access_log_line_carries_tenant_and_request_id(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    http_logger = logging.getLogger("wharf_common.http")
    http_logger.addHandler(handler)
    http_logger.setLevel(logging.INFO)
    try:
        headers = {**bearer(tenant["access_token"]), "X-Request-ID": "trace-1"}
        async with http.get(f"{gateway.url}/v1/shipments", headers=headers) as response:
            assert response.status == 503
    finally:
        http_logger.removeHandler(handler)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    line = next(line for line in lines if "/v1/shipments" in line["message"])
    assert line["tenant"] == tenant["tenant_id"]
    assert line["correlation_id"] == "trace-1"
    assert tenant["access_token"] not in stream.getvalue()


def test_every_scope_a_route_asks_for_can_be_granted() -> None:
    grantable = set(typing.get_args(models.Scope))

    asked = {scope for route in table({}) for scope in route.scopes}

    assert asked <= grantable


async def test_two_credentials_at_once_are_refused(
    gateway: Any, http: aiohttp.ClientSession, signup: Signup
) -> None:
    tenant = await signup()
    headers = {**bearer(tenant["access_token"]), "X-API-Key": "wk_not_a_real_key"}

    async with http.get(f"{gateway.url}/v1/templates", headers=headers) as response:
        assert response.status == 400
        assert "one credential" in (await response.json())["detail"]
