from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from wharf_common import deadlines, events
from wharf_common.bus import Bus
from wharf_common.errors import ClientError
from wharf_webhooks import signing
from wharf_webhooks.addresses import GuardedResolver, RefusedDestination, address_allowed

from .conftest import Rpc, Serve, StartWebhooks

RENDERED = "document.rendered"


def _rendered(tenant: str) -> Any:
    body = events.DocumentRendered(id=uuid.uuid4(), pages=1, bytes=100)
    return events.event_envelope(body, tenant=tenant)


async def _eventually(check: Any, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)


async def test_failing_endpoint_receives_each_event_once_correctly_signed(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    secret: list[str] = []
    received: list[tuple[str, bool]] = []
    calls = 0

    async def receiver(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        body = await request.read()
        signed = signing.verify(secret[0], request.headers["Wharf-Signature"], body)
        if calls <= 3:
            return web.Response(status=500)
        received.append((json.loads(body)["id"], signed))
        assert request.headers["Wharf-Event-Id"] == json.loads(body)["id"]
        return web.Response(status=204)

    await start_webhooks()
    url = await serve(receiver)
    created = await rpc("create", "t1", url=url, event_types=[RENDERED])
    secret.append(created["secret"])
    published = [_rendered("t1") for _ in range(2)]
    for envelope in published:
        await bus.publish_event(envelope)

    await _eventually(lambda: len(received) == 2)
    await asyncio.sleep(1.0)

    assert sorted(event_id for event_id, _ in received) == sorted(str(e.id) for e in published)
    assert all(signed for _, signed in received)
    history = await rpc("deliveries", "t1", id=created["id"])
    assert Counter(item["status_code"] for item in history["items"]) == {500: 3, 204: 2}
    assert history["pending"] == 0
    for item in history["items"]:
        # Each attempt keeps its own outcome; the delivery's later success is shown apart.
        failed = item["status_code"] == 500
        assert item["attempt_outcome"] == ("failed" if failed else "succeeded")
        assert item["error"] == ("HTTP 500" if failed else None)
        assert item["current_delivery_status"] == "delivered"


async def test_delivery_history_pages_newest_first_with_a_cursor(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    async def receiver(request: web.Request) -> web.Response:
        return web.Response(status=204)

    await start_webhooks()
    created = await rpc("create", "t1", url=await serve(receiver), event_types=[RENDERED])
    for _ in range(3):
        await bus.publish_event(_rendered("t1"))
    async with asyncio.timeout(15):
        while len((history := await rpc("deliveries", "t1", id=created["id"]))["items"]) < 3:
            await asyncio.sleep(0.05)

    pages: list[list[dict[str, Any]]] = []
    cursor: dict[str, str] = {}
    while True:
        page = await rpc("deliveries", "t1", id=created["id"], limit=2, **cursor)
        pages.append(page["items"])
        if page["next_cursor"] is None:
            break
        cursor = {"cursor": page["next_cursor"]}

    assert [len(items) for items in pages] == [2, 1]
    assert pages[0] + pages[1] == history["items"]
    assert history["next_cursor"] is None
    with pytest.raises(ClientError) as refused:
        await rpc("deliveries", "t1", id=created["id"], cursor="zzz")
    assert (refused.value.status, refused.value.detail) == (400, "invalid cursor")


def test_signature_is_refused_when_tampered_or_stale() -> None:
    header = signing.signature("whsec_x", b'{"a":1}')

    assert signing.verify("whsec_x", header, b'{"a":1}')
    assert not signing.verify("whsec_x", header, b'{"a":2}')
    assert not signing.verify("whsec_y", header, b'{"a":1}')
    assert not signing.verify("whsec_x", header, b'{"a":1}', now=time.time() + 3600)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/hook",
        "https://192.168.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://224.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        "http://example.com/hook",
    ],
)
async def test_internal_endpoints_are_refused_at_registration(
    start_webhooks: StartWebhooks, rpc: Rpc, url: str
) -> None:
    await start_webhooks(webhook_allowed_hosts=[])

    with pytest.raises(ClientError) as refused:
        await rpc("create", "t1", url=url, event_types=[RENDERED])

    assert refused.value.status == 422
    assert await rpc("list", "t1") == {"items": []}


class _Rebinding(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = ["93.184.216.34", "127.0.0.1"]
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in addresses
        ]

    async def close(self) -> None:
        pass


async def test_delivery_time_resolution_refuses_any_internal_address() -> None:
    resolver = GuardedResolver([], _Rebinding())

    with pytest.raises(RefusedDestination):
        await resolver.resolve("hooks.example.com", 443)
    assert address_allowed("93.184.216.34")
    assert not address_allowed("169.254.169.254")
    assert not address_allowed("fe80::1")


async def test_redirect_to_an_internal_address_is_not_followed(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    inside: list[str] = []

    async def internal(request: web.Request) -> web.Response:
        inside.append(request.path)
        return web.Response(status=204)

    target = (await serve(internal)).replace("127.0.0.1", "localhost")

    async def redirecting(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    await start_webhooks(webhook_retry_for=0.5)
    created = await rpc("create", "t1", url=await serve(redirecting), event_types=[RENDERED])
    await bus.publish_event(_rendered("t1"))

    async def failed() -> bool:
        history = await rpc("deliveries", "t1", id=created["id"])
        return bool(history["items"]) and history["items"][0]["current_delivery_status"] == "failed"

    end = time.monotonic() + 15
    while not await failed():
        assert time.monotonic() < end
        await asyncio.sleep(0.1)
    history = await rpc("deliveries", "t1", id=created["id"])
    assert {item["status_code"] for item in history["items"]} == {302}
    assert inside == []


async def test_dead_endpoint_of_one_tenant_does_not_delay_another(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    b_received: list[float] = []

    async def hanging(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=204)

    async def fast(request: web.Request) -> web.Response:
        b_received.append(time.monotonic())
        return web.Response(status=204)

    await start_webhooks(webhook_timeout=5.0)
    await rpc("create", "a", url=await serve(hanging), event_types=[RENDERED])
    await rpc("create", "b", url=await serve(fast), event_types=[RENDERED])
    for _ in range(30):
        await bus.publish_event(_rendered("a"))
    await asyncio.sleep(0.3)
    sent = time.monotonic()
    for _ in range(3):
        await bus.publish_event(_rendered("b"))

    await _eventually(lambda: len(b_received) == 3, timeout=4.0)
    assert max(b_received) - sent < 2.0


async def test_replay_sends_again_the_events_since_a_time(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    received: list[str] = []

    async def receiver(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read())["id"])
        return web.Response(status=204)

    await start_webhooks()
    created = await rpc("create", "t1", url=await serve(receiver), event_types=[RENDERED])
    before = _rendered("t1")
    await bus.publish_event(before)
    await _eventually(lambda: len(received) == 1)
    since = deadlines.now()
    after = [_rendered("t1") for _ in range(2)]
    for envelope in after:
        await bus.publish_event(envelope)
    await _eventually(lambda: len(received) == 3)

    answer = await rpc("replay", "t1", id=created["id"], since=since.isoformat())

    assert answer["scheduled"] == 2
    await _eventually(lambda: len(received) == 5)
    await asyncio.sleep(0.5)
    assert Counter(received) == {str(before.id): 1, **{str(e.id): 2 for e in after}}


async def test_tenants_see_and_receive_only_their_own(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    got: dict[str, list[str]] = {"a": [], "b": []}

    def receiver(tenant: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            got[tenant].append(json.loads(await request.read())["id"])
            return web.Response(status=204)

        return handle

    await start_webhooks()
    a = await rpc("create", "a", url=await serve(receiver("a")), event_types=[RENDERED])
    await rpc("create", "b", url=await serve(receiver("b")), event_types=[RENDERED])
    event = _rendered("a")
    await bus.publish_event(event)
    await _eventually(lambda: len(got["a"]) == 1)
    await asyncio.sleep(0.5)

    assert got == {"a": [str(event.id)], "b": []}
    assert [item["id"] for item in (await rpc("list", "a"))["items"]] == [a["id"]]
    assert all("secret" not in item for item in (await rpc("list", "a"))["items"])
    assert len((await rpc("list", "b"))["items"]) == 1
    since = datetime(2020, 1, 1, tzinfo=UTC).isoformat()
    for operation, data in [
        ("deliveries", {"id": a["id"]}),
        ("replay", {"id": a["id"], "since": since}),
        ("delete", {"id": a["id"]}),
    ]:
        with pytest.raises(ClientError) as refused:
            await rpc(operation, "b", **data)
        assert refused.value.status == 404
    assert (await rpc("delete", "a", id=a["id"]))["deleted"] is True
    assert (await rpc("list", "a"))["items"] == []


async def test_delivery_that_keeps_failing_is_marked_failed_after_its_window(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503)

    await start_webhooks(webhook_retry_for=1.0)
    created = await rpc("create", "t1", url=await serve(broken), event_types=[RENDERED])
    await bus.publish_event(_rendered("t1"))

    end = time.monotonic() + 15
    while True:
        history = await rpc("deliveries", "t1", id=created["id"])
        if history["items"] and history["items"][0]["current_delivery_status"] == "failed":
            break
        assert time.monotonic() < end
        await asyncio.sleep(0.1)
    assert 2 <= len(history["items"]) <= 10
    assert history["pending"] == 0


async def test_deleting_an_endpoint_mid_delivery_cancels_that_delivery_for_good(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus, database_url: str
) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        arrived.set()
        await release.wait()
        return web.Response(status=500)

    await start_webhooks(webhook_timeout=30.0)
    created = await rpc("create", "t1", url=await serve(slow), event_types=[RENDERED])
    endpoint_id = uuid.UUID(created["id"])
    await bus.publish_event(_rendered("t1"))
    async with asyncio.timeout(15):
        await arrived.wait()

    await rpc("delete", "t1", id=created["id"])
    release.set()

    conn = await asyncpg.connect(database_url)
    try:

        async def attempts() -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM webhooks.attempts WHERE endpoint_id = $1", endpoint_id
                )
            )

        async with asyncio.timeout(15):
            while not await attempts():
                await asyncio.sleep(0.05)
        status = "SELECT status FROM webhooks.deliveries WHERE endpoint_id = $1"
        assert await conn.fetchval(status, endpoint_id) == "cancelled"
        # A write racing the delete can still leave a pending delivery behind;
        # a deleted endpoint's deliveries are never claimed all the same.
        await conn.execute(
            "UPDATE webhooks.deliveries SET status = 'pending', next_attempt_at = now()"
            " WHERE endpoint_id = $1",
            endpoint_id,
        )
        await asyncio.sleep(0.5)
        assert calls == 1
        assert await attempts() == 1
    finally:
        await conn.close()


async def test_replaying_again_skips_events_whose_delivery_is_still_pending(
    start_webhooks: StartWebhooks, rpc: Rpc, serve: Serve, bus: Bus
) -> None:
    received: list[str] = []
    open_ = asyncio.Event()
    open_.set()

    async def receiver(request: web.Request) -> web.Response:
        await open_.wait()
        received.append(json.loads(await request.read())["id"])
        return web.Response(status=204)

    # Held requests must not time out and be retried behind the test's back.
    await start_webhooks(webhook_timeout=30.0)
    created = await rpc("create", "t1", url=await serve(receiver), event_types=[RENDERED])
    since = deadlines.now()
    published = [_rendered("t1") for _ in range(3)]
    for envelope in published:
        await bus.publish_event(envelope)
    async with asyncio.timeout(15):
        while True:
            history = await rpc("deliveries", "t1", id=created["id"])
            if len(history["items"]) == 3 and history["pending"] == 0:
                break
            await asyncio.sleep(0.05)
    open_.clear()

    first = await rpc("replay", "t1", id=created["id"], since=since.isoformat())
    second = await rpc("replay", "t1", id=created["id"], since=since.isoformat())

    assert (first["scheduled"], first["already_pending"]) == (3, 0)
    assert (second["scheduled"], second["already_pending"]) == (0, 3)
    open_.set()
    await _eventually(lambda: len(received) == 6)
    await asyncio.sleep(0.5)
    assert Counter(received) == {str(e.id): 2 for e in published}
    third = await rpc("replay", "t1", id=created["id"], since=since.isoformat())
    assert (third["scheduled"], third["already_pending"]) == (3, 0)
