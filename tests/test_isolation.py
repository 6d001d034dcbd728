"""Tenant isolation on every tenant-scoped route, with every service up.

What tenant A makes, tenant B can neither read, change nor list: each such
call answers 404 (never 403, which would reveal that the object exists),
whether B calls with a user's token or with an API key of every scope.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

if TYPE_CHECKING:
    from tests.conftest import Platform, Tenant

pytestmark = pytest.mark.slow

FEDEX = Path(__file__).parents[1] / "services/carrier-ingest/tests/fixtures"
FEDEX_PAYLOAD = FEDEX / "fedex_exact_duplicates.json"
FEDEX_NUMBER = "700000000001"
TRACKING = f"/v1/tracking-events?carrier=fedex&tracking_number={FEDEX_NUMBER}"


async def make_objects(platform: Platform, a: Tenant) -> dict[str, str]:
    """Every kind of tenant-scoped object, made by `a`; their ids by kind."""
    form = aiohttp.FormData({"name": "label", "html": "<p>{{ n }}</p>"}, default_to_multipart=True)
    status, _ = await platform.request("POST", "/v1/templates", a.bearer, data=form)
    assert status == 201
    calls: dict[str, tuple[str, dict[str, Any]]] = {
        "document": ("/v1/documents", {"template": "label", "data": {"n": 1}}),
        "batch": ("/v1/document-batches", {"template": "label", "items": [{"data": {}}]}),
        "shipment": ("/v1/shipments", {"carrier": "fedex", "tracking_number": FEDEX_NUMBER}),
        "webhook": (
            "/v1/webhooks",
            {"url": "http://127.0.0.1:9/hook", "event_types": ["document.rendered"]},
        ),
        "carrier_documents": (
            "/v1/carrier-documents",
            {"carrier": "dhl", "tracking_numbers": ["JD0001"]},
        ),
    }
    ids = {"api_key": a.api_key_id}
    for kind, (path, body) in calls.items():
        status, answer = await platform.request("POST", path, a.bearer, json=body)
        assert status in {201, 202}, (kind, answer)
        ids[kind] = answer["id"]

    headers = {**a.key, "Content-Type": "application/json"}
    status, accepted = await platform.request(
        "POST", "/v1/carriers/fedex/events", headers, data=FEDEX_PAYLOAD.read_bytes()
    )
    assert status == 202
    ids["ingest"] = accepted["ingest_id"]
    async with asyncio.timeout(30):
        while not (await platform.request("GET", TRACKING, a.bearer))[1]["events"]:
            await asyncio.sleep(0.1)
    return ids


def by_id(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every call that names one object of the tenant-scoped routes."""
    hook = f"/v1/webhooks/{ids['webhook']}"
    return [
        ("GET", f"/v1/documents/{ids['document']}", {}),
        ("GET", f"/v1/document-batches/{ids['batch']}", {}),
        ("GET", f"/v1/document-batches/{ids['batch']}/items", {}),
        ("GET", f"/v1/shipments/{ids['shipment']}", {}),
        ("GET", f"/v1/carrier-documents/{ids['carrier_documents']}", {}),
        ("GET", f"/v1/carriers/fedex/events/{ids['ingest']}", {}),
        ("GET", f"{hook}/deliveries", {}),
        ("POST", f"{hook}/replay", {"json": {"since": "2020-01-01T00:00:00Z"}}),
        ("DELETE", hook, {}),
    ]


async def test_tenant_b_never_sees_tenant_a_objects(platform: Platform) -> None:
    a = await platform.tenant("a@example.com")
    b = await platform.tenant("b@example.com")
    ids = await make_objects(platform, a)

    for credential in (b.bearer, b.key):
        for method, path, kwargs in by_id(ids):
            status, _ = await platform.request(method, path, credential, **kwargs)
            assert status == 404, (method, path, credential)
    status, _ = await platform.request("DELETE", f"/v1/api-keys/{ids['api_key']}", b.bearer)
    assert status == 404

    for credential in (b.bearer, b.key):
        assert (await platform.request("GET", "/v1/templates", credential))[1]["templates"] == []
        assert (await platform.request("GET", "/v1/shipments", credential))[1]["items"] == []
        assert (await platform.request("GET", "/v1/webhooks", credential))[1]["items"] == []
        assert (await platform.request("GET", TRACKING, credential))[1]["events"] == []

    for method, path, kwargs in by_id(ids)[:7]:
        status, _ = await platform.request(method, path, a.bearer, **kwargs)
        assert status in {200, 202}, (method, path)
    assert (await platform.request("GET", "/v1/templates", a.key))[1]["templates"]
    assert (await platform.request("GET", "/v1/shipments", a.key))[1]["items"]
