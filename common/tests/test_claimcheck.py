from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from wharf_common import claimcheck
from wharf_common.bus import Bus
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.storage import ObjectStore, open_store

QUEUE = "wharf.test.large"


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        url = f"file://{tmp_path}/objects"
    else:
        url = request.getfixturevalue("s3_url")
    store = await open_store(url, signing_key="test", public_url="http://127.0.0.1:1")
    yield store
    await store.close()


async def test_large_body_round_trips_through_object_storage(
    amqp_url: str, store: ObjectStore
) -> None:
    bus = Bus(amqp_url, service="test", store=store, claim_check_threshold=1024)
    await bus.connect()
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await received.put(delivery)

    try:
        await bus.consume(QUEUE, handler)
        large = {"blob": os.urandom(300 * 1024).hex()}
        small = {"n": 1}
        await bus.send(QUEUE, Envelope(type="test.large", body=large))
        await bus.send(QUEUE, Envelope(type="test.small", body=small))

        first = await asyncio.wait_for(received.get(), 10)
        second = await asyncio.wait_for(received.get(), 10)
    finally:
        await bus.close()

    by_type = {d.envelope.type: d for d in (first, second)}
    assert by_type["test.large"].body == large
    assert by_type["test.large"].envelope.body_ref is not None
    assert await store.exists(by_type["test.large"].envelope.body_ref)
    assert by_type["test.small"].body == small
    assert by_type["test.small"].envelope.body_ref is None


async def test_large_rpc_request_and_reply_round_trip(amqp_url: str, tmp_path: Path) -> None:
    from wharf_common import rpc

    store = await open_store(
        f"file://{tmp_path}/objects", signing_key="test", public_url="http://127.0.0.1:1"
    )
    bus = Bus(amqp_url, service="test", store=store, claim_check_threshold=1024)
    await bus.connect()

    async def echo(request: Envelope) -> dict[str, str]:
        return {"blob": request.body["blob"][::-1]}

    server = await rpc.serve(bus, "wharf.test.rpc", echo)
    try:
        blob = os.urandom(64 * 1024).hex()
        result = await bus.call("wharf.test.rpc", Envelope(type="test.echo", body={"blob": blob}))
    finally:
        await server.stop()
        await bus.close()
        await store.close()
    assert result == {"blob": blob[::-1]}


async def test_expire_deletes_whole_days_past_the_retention(store: ObjectStore) -> None:
    today = date(2026, 6, 30)
    keys = {
        back: f"{claimcheck.PREFIX}/{today - timedelta(days=back):%Y/%m/%d}/{back}.json"
        for back in (0, 7, 8, 20, 200)
    }
    for key in keys.values():
        await store.put(key, b"{}", "application/json")
    await store.put("documents/keep.pdf", b"%PDF")

    deleted = await claimcheck.expire(store, retention_days=7, today=today)

    assert deleted == 2  # 8 and 20 days old; 200 is past the look-back
    assert [back for back, key in keys.items() if await store.exists(key)] == [0, 7, 200]
    assert await store.exists("documents/keep.pdf")
    assert await claimcheck.expire(store, retention_days=7, today=today) == 0
