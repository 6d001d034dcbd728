"""The service end to end: carrier posts through the gateway to events and shipment status."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest

from wharf_carrier_ingest import registry
from wharf_carrier_ingest.events import ResultBuilder
from wharf_carrier_ingest.ingest import PAYLOADS_QUEUE, STATUS_CHANGED
from wharf_common import deadletters
from wharf_common.bus import EVENTS_EXCHANGE

from .conftest import Stack, Tenant

Read = Callable[[str], bytes]
FEDEX_NUMBER = "700000000001"


def fedex(number: str, *scans: tuple[str, str, str]) -> bytes:
    """A small FedEx track reply with (time, code, description) scans."""
    events = [
        {"date": date, "eventType": code, "eventDescription": text, "scanLocation": {}}
        for date, code, text in scans
    ]
    result = {"trackingNumberInfo": {"trackingNumber": number}, "scanEvents": events}
    body = {"trackingNumber": number, "trackResults": [result]}
    return json.dumps({"output": {"completeTrackResults": [body]}}).encode()


@pytest.fixture
async def status_events(stack: Stack) -> AsyncIterator[list[dict[str, Any]]]:
    """Every `shipment.status_changed` event published while the test runs."""
    seen: list[dict[str, Any]] = []
    channel = await stack.ingest.runtime.bus.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, STATUS_CHANGED)

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(json.loads(message.body))
        await message.ack()

    await queue.consume(collect)
    yield seen
    await channel.close()


async def create_shipment(stack: Stack, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    async with stack.http.post(
        f"{stack.url}/v1/shipments", json=fields, headers=tenant.bearer
    ) as response:
        assert response.status == 201, await response.text()
        shipment: dict[str, Any] = await response.json()
        return shipment


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    ends = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < ends, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_posted_payloads_become_events_and_shipment_status(
    stack: Stack, fixture_bytes: Read, status_events: list[dict[str, Any]]
) -> None:
    tenant = await stack.tenant("ops@acme.example")
    shipment = await create_shipment(
        stack, tenant, carrier="fedex", tracking_number=FEDEX_NUMBER, reference="order-1"
    )
    assert shipment["status"] == "pending"

    response = await stack.post_payload(
        tenant, "fedex", fixture_bytes("fedex_exact_duplicates.json")
    )
    assert response.status == 202
    csv = fixture_bytes("royalmail_cp1252.csv")
    assert (await stack.post_payload(tenant, "royalmail_csv", csv, "text/csv")).status == 202
    await stack.settled()

    found = await stack.get(tenant, f"/v1/shipments/{shipment['id']}")
    assert found["status"] == "delivered"
    assert found["status_at"] == "2024-06-03T15:15:00+00:00"
    assert [e["status"] for e in found["events"]] == ["unknown", "out_for_delivery", "delivered"]
    assert found["events"][2]["classified_by"]
    royal = await stack.get(
        tenant, "/v1/tracking-events", carrier="royalmail", tracking_number="XA123456785GB"
    )
    assert [e["status"] for e in royal["events"]] == ["delivered"]
    listed = await stack.get(tenant, "/v1/shipments")
    assert [s["id"] for s in listed["items"]] == [shipment["id"]]
    delivered = await stack.get(tenant, "/v1/shipments", status="delivered")
    assert [s["id"] for s in delivered["items"]] == [shipment["id"]]
    assert (await stack.get(tenant, "/v1/shipments", status="in_transit"))["items"] == []

    await wait_for(lambda: _at_least(status_events, 1))
    assert status_events[0]["body"]["status"] == "delivered"
    assert status_events[0]["body"]["previous_status"] == "pending"
    assert status_events[0]["tenant"] == tenant.id


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def test_duplicate_post_has_no_effect(
    stack: Stack, fixture_bytes: Read, status_events: list[dict[str, Any]]
) -> None:
    tenant = await stack.tenant("dup@acme.example")
    await create_shipment(stack, tenant, carrier="fedex", tracking_number=FEDEX_NUMBER)
    payload = fixture_bytes("fedex_exact_duplicates.json")

    for _ in range(2):
        assert (await stack.post_payload(tenant, "fedex", payload)).status == 202
        await stack.settled()

    events = await stack.get(
        tenant, "/v1/tracking-events", carrier="fedex", tracking_number=FEDEX_NUMBER
    )
    assert len(events["events"]) == 3
    await asyncio.sleep(0.3)
    assert len(status_events) == 1
    outcomes = await stack.ingest.runtime.db.fetch(
        "SELECT outcome FROM carrier_ingest.ingests ORDER BY processed_at"
    )
    assert [row["outcome"] for row in outcomes] == ["events", "duplicate"]


async def test_out_of_order_events_never_move_status_back(
    stack: Stack, status_events: list[dict[str, Any]]
) -> None:
    tenant = await stack.tenant("order@acme.example")
    shipment = await create_shipment(stack, tenant, carrier="fedex", tracking_number="7001")
    delivered = fedex("7001", ("2024-06-03T10:15:00-05:00", "DL", "Delivered"))
    earlier = fedex(
        "7001",
        ("2024-06-03T08:02:00-05:00", "OD", "On FedEx vehicle for delivery"),
        ("2024-06-02T08:02:00-05:00", "IT", "In transit"),
    )

    await stack.post_payload(tenant, "fedex", delivered)
    await stack.settled()
    await stack.post_payload(tenant, "fedex", earlier)
    await stack.settled()

    found = await stack.get(tenant, f"/v1/shipments/{shipment['id']}")
    assert found["status"] == "delivered"
    assert len(found["events"]) == 3
    await asyncio.sleep(0.3)
    assert [e["body"]["status"] for e in status_events] == ["delivered"]


async def test_events_before_the_shipment_attach_on_creation(
    stack: Stack, fixture_bytes: Read, status_events: list[dict[str, Any]]
) -> None:
    tenant = await stack.tenant("early@acme.example")
    soap = fixture_bytes("aramex_tracking_soap.xml")
    assert (await stack.post_payload(tenant, "aramex", soap, "text/xml")).status == 202
    await stack.settled()
    early = await stack.get(
        tenant, "/v1/tracking-events", carrier="aramex", tracking_number="44000000001"
    )
    assert len(early["events"]) == 2

    shipment = await create_shipment(stack, tenant, carrier="aramex", tracking_number="44000000001")

    assert shipment["status"] == "delivered"
    assert [e["status"] for e in shipment["events"]] == ["info_received", "delivered"]
    await wait_for(lambda: _at_least(status_events, 1))
    assert status_events[0]["body"]["shipment_id"] == shipment["id"]


async def test_tenants_never_see_each_others_data(stack: Stack, fixture_bytes: Read) -> None:
    acme = await stack.tenant("a@acme.example")
    other = await stack.tenant("b@other.example")
    shipment = await create_shipment(stack, acme, carrier="fedex", tracking_number=FEDEX_NUMBER)
    await stack.post_payload(acme, "fedex", fixture_bytes("fedex_exact_duplicates.json"))
    await stack.settled()

    assert (await stack.get(other, "/v1/shipments"))["items"] == []
    async with stack.http.get(
        f"{stack.url}/v1/shipments/{shipment['id']}", headers=other.bearer
    ) as response:
        assert response.status == 404
    theirs = await stack.get(
        other, "/v1/tracking-events", carrier="fedex", tracking_number=FEDEX_NUMBER
    )
    assert theirs["events"] == []

    mine = await create_shipment(stack, other, carrier="fedex", tracking_number=FEDEX_NUMBER)
    assert mine["status"] == "pending"
    assert mine["events"] == []
    acme_view = await stack.get(acme, f"/v1/shipments/{shipment['id']}")
    assert acme_view["status"] == "delivered"


async def test_unparseable_payload_is_dead_lettered_then_replayed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await stack.tenant("dlq@acme.example")
    shipment = await create_shipment(stack, tenant, carrier="fedex", tracking_number="7002")

    response = await stack.post_payload(tenant, "fedex", b'{"tracking": "not what FedEx sends"}')
    assert response.status == 202
    bus = stack.ingest.runtime.bus
    dead: list[deadletters.DeadLetter] = []

    async def dead_lettered() -> bool:
        dead[:] = await deadletters.inspect(bus, PAYLOADS_QUEUE)
        return bool(dead)

    await wait_for(dead_lettered)
    ref = dead[0].body["body"]["payload_ref"]
    assert ref.startswith(f"{tenant.id}/carrier-payloads/fedex/")
    assert dead[0].reason.startswith("invalid:")
    assert ref in dead[0].reason
    outcome = await stack.ingest.runtime.db.fetchrow(
        "SELECT outcome, detail FROM carrier_ingest.ingests"
    )
    assert outcome["outcome"] == "dead_lettered"

    # The adapter is "fixed": it now reads the stored payload as a delivery scan.
    fixed = fedex("7002", ("2024-06-03T10:15:00-05:00", "DL", "Delivered"))
    original = registry._ADAPTERS["fedex"]

    def repaired(request: registry.Request, builder: ResultBuilder) -> None:
        original.adapter(registry.Request(fixed, None, None), builder)

    monkeypatch.setitem(
        registry._ADAPTERS, "fedex", registry._Entry(repaired, original.carrier, original.table)
    )
    assert await deadletters.replay(bus, PAYLOADS_QUEUE) == 1
    await stack.settled()

    found = await stack.get(tenant, f"/v1/shipments/{shipment['id']}")
    assert found["status"] == "delivered"
    assert await deadletters.inspect(bus, PAYLOADS_QUEUE) == []


async def test_hung_adapter_is_stopped_at_its_deadline(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.ingest.runtime.settings.parse_timeout = 0.3  # type: ignore[attr-defined]
    tenant = await stack.tenant("hang@acme.example")

    def hang(request: registry.Request, builder: ResultBuilder) -> None:
        time.sleep(2)

    # The gateway accepts only known formats, so a known one gets the hanging adapter.
    monkeypatch.setitem(registry._ADAPTERS, "fedex", registry._Entry(hang, "fedex", "fedex"))
    started = time.monotonic()
    await stack.post_payload(tenant, "fedex", b"anything")
    bus = stack.ingest.runtime.bus

    async def dead_lettered() -> bool:
        return bool(await deadletters.inspect(bus, PAYLOADS_QUEUE))

    await wait_for(dead_lettered)
    assert time.monotonic() - started < 1.8
    (dead,) = await deadletters.inspect(bus, PAYLOADS_QUEUE)
    assert "parse deadline" in dead.reason


async def test_not_found_reply_is_recorded_without_events(stack: Stack) -> None:
    tenant = await stack.tenant("nf@acme.example")
    reply = {
        "output": {
            "completeTrackResults": [
                {
                    "trackingNumber": "7003",
                    "trackResults": [
                        {
                            "trackingNumberInfo": {"trackingNumber": "7003"},
                            "error": {
                                "code": "TRACKING.TRACKINGNUMBER.NOTFOUND",
                                "message": "Tracking number cannot be found.",
                            },
                        }
                    ],
                }
            ]
        }
    }

    await stack.post_payload(tenant, "fedex", json.dumps(reply).encode())
    await stack.settled()

    row = await stack.ingest.runtime.db.fetchrow(
        "SELECT outcome, events, not_found FROM carrier_ingest.ingests"
    )
    assert row["outcome"] == "not_found"
    assert row["events"] == 0
    assert row["not_found"][0]["tracking_number"] == "7003"


async def test_signed_carriers_need_a_valid_signature(stack: Stack, fixture_bytes: Read) -> None:
    tenant = await stack.tenant("sig@acme.example")
    payload = b'{"shipments": []}'
    digest = hmac.new(b"dhl-secret", payload, hashlib.sha256).hexdigest()

    unsigned = await stack.post_payload(tenant, "dhl_unified", payload)
    forged = await stack.post_payload(
        tenant, "dhl_unified", payload, headers={"X-Wharf-Signature": "sha256=" + "0" * 64}
    )
    signed = await stack.post_payload(
        tenant, "dhl_unified", payload, headers={"X-Wharf-Signature": f"sha256={digest}"}
    )

    assert (unsigned.status, forged.status, signed.status) == (401, 401, 202)


async def test_oversized_payload_gets_413_and_user_tokens_cannot_post(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("big@acme.example")

    big = await stack.post_payload(tenant, "fedex", b"x" * (1024 * 1024 + 1))
    async with stack.http.post(
        f"{stack.url}/v1/carriers/fedex/events", data=b"{}", headers=tenant.bearer
    ) as response:
        as_user = response.status

    assert big.status == 413
    assert as_user == 403
