"""An ingest's status through the gateway: pending, ingested with counts, or failed and why."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uuid_utils.compat

from wharf_carrier_ingest import registry
from wharf_carrier_ingest.db import forget_ingests
from wharf_carrier_ingest.events import ResultBuilder
from wharf_carrier_ingest.ingest import PAYLOADS_QUEUE
from wharf_common import deadletters

from .conftest import Stack, Tenant
from .test_service import FEDEX_NUMBER, create_shipment, wait_for

Read = Callable[[str], bytes]


async def post(
    stack: Stack, tenant: Tenant, carrier: str, payload: bytes, content_type: str
) -> str:
    """Post a payload as the tenant's carrier; return the link to its status."""
    response = await stack.post_payload(tenant, carrier, payload, content_type)
    assert response.status == 202
    body = await response.json()
    assert body["links"]["ingest"] == response.headers["Location"]
    assert response.headers["Location"] == f"/v1/carriers/{carrier}/events/{body['ingest_id']}"
    return response.headers["Location"]


async def status(
    stack: Stack, link: str, headers: dict[str, str], expect: int = 200
) -> dict[str, Any]:
    async with stack.http.get(f"{stack.url}{link}", headers=headers) as response:
        assert response.status == expect, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def test_good_payload_is_ingested_with_its_counts(stack: Stack, fixture_bytes: Read) -> None:
    tenant = await stack.tenant("counts@acme.example")
    await create_shipment(stack, tenant, carrier="fedex", tracking_number=FEDEX_NUMBER)
    payload = fixture_bytes("fedex_exact_duplicates.json")

    first = await post(stack, tenant, "fedex", payload, "application/json")
    await stack.settled()
    again = await post(stack, tenant, "fedex", payload, "application/json")
    await stack.settled()
    ingested = await status(stack, first, tenant.carrier)
    repeated = await status(stack, again, tenant.bearer)

    assert ingested["status"] == "ingested"
    assert ingested["outcome"] == "events"
    assert ingested["carrier"] == "fedex"
    assert ingested["counts"] == {
        "events": 3,
        "new_events": 3,
        "duplicates": 0,
        "status_changes": 1,
    }
    assert ingested["failure"] is None
    received = datetime.fromisoformat(ingested["received_at"])
    assert received <= datetime.fromisoformat(ingested["processed_at"])
    (events_link,) = ingested["links"]["tracking_events"]
    assert events_link == f"/v1/tracking-events?carrier=fedex&tracking_number={FEDEX_NUMBER}"
    assert len((await status(stack, events_link, tenant.bearer))["events"]) == 3
    assert repeated["outcome"] == "duplicate"
    assert repeated["counts"]["new_events"] == 0
    assert repeated["counts"]["duplicates"] == 3
    assert repeated["counts"]["status_changes"] == 0


BAD_PAYLOADS = [
    ("fedex", b'{"output": ', "application/json"),
    ("fedex", b'{"foo": 1}', "application/json"),
    ("fedex", b"delivered at noon", "text/plain"),
    ("x12_214", b'{"foo": 1}', "application/json"),
]


async def test_bad_payload_fails_with_the_reason_once_dead_lettered(stack: Stack) -> None:
    tenant = await stack.tenant("bad@acme.example")
    links = [await post(stack, tenant, *bad) for bad in BAD_PAYLOADS]
    bus = stack.ingest.runtime.bus

    async def all_dead_lettered() -> bool:
        return len(await deadletters.inspect(bus, PAYLOADS_QUEUE)) == len(BAD_PAYLOADS)

    await wait_for(all_dead_lettered)
    answers = [await status(stack, link, tenant.carrier) for link in links]

    for (carrier, _, _), answer in zip(BAD_PAYLOADS, answers, strict=True):
        assert answer["status"] == "failed"
        assert answer["outcome"] == "dead_lettered"
        assert answer["counts"] is None
        assert answer["failure"]["adapter"] == carrier
        assert answer["failure"]["reason"].startswith(f"invalid: {carrier}: ")
        assert "carrier-payloads" not in answer["failure"]["reason"]
        assert answer["links"]["tracking_events"] == []


async def test_payload_is_pending_until_handled(
    stack: Stack, fixture_bytes: Read, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await stack.tenant("pending@acme.example")
    release = threading.Event()
    original = registry._ADAPTERS["fedex"]

    def held(request: registry.Request, builder: ResultBuilder) -> None:
        release.wait(5)
        original.adapter(request, builder)

    monkeypatch.setitem(
        registry._ADAPTERS, "fedex", registry._Entry(held, original.carrier, original.table)
    )
    link = await post(
        stack, tenant, "fedex", fixture_bytes("fedex_exact_duplicates.json"), "application/json"
    )

    pending = await status(stack, link, tenant.carrier)
    release.set()
    await stack.settled()
    handled = await status(stack, link, tenant.carrier)

    assert pending["status"] == "pending"
    assert pending["counts"] is None and pending["processed_at"] is None
    assert pending["received_at"] == handled["received_at"]
    assert handled["status"] == "ingested"


async def test_unknown_or_another_tenants_ingest_is_404(stack: Stack, fixture_bytes: Read) -> None:
    acme = await stack.tenant("mine@acme.example")
    other = await stack.tenant("theirs@other.example")
    link = await post(
        stack, acme, "fedex", fixture_bytes("fedex_exact_duplicates.json"), "application/json"
    )
    await stack.settled()
    ingest_id = link.rsplit("/", 1)[1]

    for headers in (other.carrier, other.bearer):
        await status(stack, link, headers, expect=404)
    await status(stack, f"/v1/carriers/ups/events/{ingest_id}", acme.carrier, expect=404)
    for unknown in (uuid.uuid4(), uuid_utils.compat.uuid7()):
        await status(stack, f"/v1/carriers/fedex/events/{unknown}", acme.carrier, expect=404)
    await status(stack, "/v1/carriers/fedex/events/not-an-id", acme.carrier, expect=422)
    assert (await status(stack, link, acme.carrier))["status"] == "ingested"


async def test_tracking_readers_may_follow_an_ingest_and_others_may_not(
    stack: Stack, fixture_bytes: Read
) -> None:
    tenant = await stack.tenant("scopes@acme.example")
    link = await post(
        stack, tenant, "fedex", fixture_bytes("fedex_exact_duplicates.json"), "application/json"
    )
    await stack.settled()
    reader = await api_key(stack, tenant, "tracking:read")
    writer = await api_key(stack, tenant, "shipments:write")

    assert (await status(stack, link, reader))["status"] == "ingested"
    await status(stack, link, writer, expect=403)


async def test_records_past_the_retention_are_forgotten(stack: Stack, fixture_bytes: Read) -> None:
    tenant = await stack.tenant("old@acme.example")
    payload = fixture_bytes("fedex_exact_duplicates.json")
    old, kept = [await post(stack, tenant, "fedex", payload, "application/json") for _ in "ab"]
    await stack.settled()
    pool = stack.ingest.runtime.db
    await pool.execute(
        "UPDATE carrier_ingest.ingests SET received_at = received_at - interval '31 days'"
        " WHERE id = $1",
        uuid.UUID(old.rsplit("/", 1)[1]),
    )

    assert await forget_ingests(pool, timedelta(days=30)) == 1
    left = await pool.fetch("SELECT id FROM carrier_ingest.ingests WHERE tenant = $1", tenant.id)
    assert [f"/v1/carriers/fedex/events/{row['id']}" for row in left] == [kept]


async def test_a_stored_payload_without_a_record_is_pending_within_the_retention(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("waiting@acme.example")
    now = time.time_ns()
    recent = await stored_without_record(stack, tenant, now - 29 * _DAY)
    stale = await stored_without_record(stack, tenant, now - 31 * _DAY)

    assert (await status(stack, recent, tenant.carrier))["status"] == "pending"
    await status(stack, stale, tenant.carrier, expect=404)


_DAY = 86_400 * 10**9


async def stored_without_record(stack: Stack, tenant: Tenant, nanoseconds: int) -> str:
    """A payload stored as the gateway stores it, received at a given time, never handled."""
    ingest_id = uuid_utils.compat.uuid7(nanoseconds=nanoseconds)
    received = datetime.fromtimestamp(nanoseconds // 10**6 / 1000, UTC)
    key = f"{tenant.id}/carrier-payloads/fedex/{received:%Y/%m/%d}/{ingest_id}"
    await stack.ingest.runtime.store.put(key, b"{}")
    return f"/v1/carriers/fedex/events/{ingest_id}"


async def api_key(stack: Stack, tenant: Tenant, scope: str) -> dict[str, str]:
    body = {"name": scope, "scopes": [scope]}
    async with stack.http.post(
        f"{stack.url}/v1/api-keys", json=body, headers=tenant.bearer
    ) as response:
        assert response.status == 201, await response.text()
        return {"X-API-Key": (await response.json())["key"]}
