from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiohttp
import pytest

from wharf_common import deadletters, deadlines
from wharf_common.bus import Bus, dead_letter_queue
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.errors import DeadlineExceeded, InvalidMessage, NotFound, ServiceUnavailable

QUEUE = "wharf.test.work"
FAST_RETRY = {"retry_base_delay": 0.05, "retry_max_delay": 0.2}


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    yield bus
    await bus.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def queue_length(bus: Bus, queue: str) -> int:
    channel = await bus.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()


async def test_command_is_consumed_once_and_acknowledged(bus: Bus) -> None:
    seen: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery)

    await bus.consume(QUEUE, handler)
    await bus.send(QUEUE, Envelope(type="test.work", body={"n": 1}, tenant="t1"))

    await wait_for(lambda: len(seen) == 1)
    await asyncio.sleep(0.3)
    assert len(seen) == 1
    assert seen[0].body == {"n": 1}
    assert seen[0].envelope.tenant == "t1"
    assert await queue_length(bus, QUEUE) == 0


async def test_transient_error_is_retried_then_succeeds(bus: Bus) -> None:
    attempts: list[int] = []

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if len(attempts) < 3:
            raise ConnectionError("database briefly away")

    await bus.consume(QUEUE, handler, **FAST_RETRY)
    await bus.send(QUEUE, Envelope(type="test.work", body={}))

    await wait_for(lambda: len(attempts) == 3)
    await asyncio.sleep(0.3)
    assert attempts == [1, 2, 3]
    assert await queue_length(bus, dead_letter_queue(QUEUE)) == 0


async def test_failing_handler_ends_in_dead_letter_queue_with_reason(bus: Bus) -> None:
    attempts: list[int] = []
    reported: list[str] = []

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RuntimeError("always broken")

    async def on_dead(envelope: Envelope, reason: str) -> None:
        reported.append(reason)

    await bus.consume(QUEUE, handler, max_attempts=3, on_dead=on_dead, **FAST_RETRY)
    await bus.send(QUEUE, Envelope(type="test.work", body={}))

    await wait_for(lambda: len(reported) == 1)
    letters = await deadletters.inspect(bus, QUEUE)
    assert attempts == [1, 2, 3]
    assert len(letters) == 1
    assert "retries exhausted after 3 attempts" in letters[0].reason
    assert "always broken" in letters[0].reason


async def test_invalid_message_goes_straight_to_dead_letter_queue(bus: Bus) -> None:
    calls: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        calls.append(delivery)
        raise InvalidMessage("missing field")

    await bus.consume(QUEUE, handler, **FAST_RETRY)
    await bus.publish_message("", QUEUE, aio_pika.Message(b"not json at all"))
    await bus.send(QUEUE, Envelope(type="test.work", body={}))

    await wait_for(lambda: len(calls) == 1)
    await asyncio.sleep(0.3)
    letters = await deadletters.inspect(bus, QUEUE)
    reasons = sorted(letter.reason for letter in letters)
    assert len(calls) == 1
    assert len(reasons) == 2
    assert reasons[0].startswith("invalid: ")
    assert any("missing field" in reason for reason in reasons)


async def test_dead_letter_can_be_replayed(bus: Bus) -> None:
    healthy = asyncio.Event()
    handled: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        if not healthy.is_set():
            raise RuntimeError("not yet")
        handled.append(delivery)

    await bus.consume(QUEUE, handler, max_attempts=1, **FAST_RETRY)
    await bus.send(QUEUE, Envelope(type="test.work", body={"x": 1}))
    await asyncio.sleep(0.5)
    assert len(await deadletters.inspect(bus, QUEUE)) == 1

    healthy.set()
    assert await deadletters.replay(bus, QUEUE) == 1

    await wait_for(lambda: len(handled) == 1)
    assert handled[0].body == {"x": 1}
    assert handled[0].attempt == 1
    assert await deadletters.inspect(bus, QUEUE) == []


async def test_expired_message_is_reported_and_never_run(bus: Bus) -> None:
    calls: list[Delivery] = []
    reported: list[str] = []

    async def handler(delivery: Delivery) -> None:
        calls.append(delivery)

    async def on_dead(envelope: Envelope, reason: str) -> None:
        reported.append(reason)

    envelope = Envelope(type="test.work", body={}, deadline=deadlines.deadline_in(0.05))
    await bus.send(QUEUE, envelope)
    await asyncio.sleep(0.2)
    await bus.consume(QUEUE, handler, on_dead=on_dead)

    await wait_for(lambda: len(reported) == 1)
    assert calls == []
    assert reported[0].startswith("deadline_exceeded")


async def test_rpc_round_trip_and_client_errors(bus: Bus) -> None:
    from wharf_common import rpc

    async def handler(request: Envelope) -> dict[str, int]:
        if request.body["n"] < 0:
            raise NotFound("no such thing")
        return {"double": request.body["n"] * 2}

    server = await rpc.serve(bus, "wharf.test.rpc", handler)
    try:
        result = await bus.call("wharf.test.rpc", Envelope(type="test.double", body={"n": 21}))
        assert result == {"double": 42}
        with pytest.raises(NotFound, match="no such thing"):
            await bus.call("wharf.test.rpc", Envelope(type="test.double", body={"n": -1}))
    finally:
        await server.stop()


async def test_rpc_without_server_is_unavailable(bus: Bus) -> None:
    with pytest.raises(ServiceUnavailable):
        await bus.call("wharf.nobody.rpc", Envelope(type="test.x", body={}), timeout=2)


async def test_rpc_deadline_passes_and_server_never_runs_it_late(bus: Bus) -> None:
    from wharf_common import rpc

    release = asyncio.Event()
    ran: list[int] = []

    async def handler(request: Envelope) -> int:
        if request.body == "block":
            await release.wait()
            return 0
        ran.append(request.body)
        return int(request.body)

    server = await rpc.serve(bus, "wharf.test.rpc", handler, prefetch=1)
    try:
        blocker = asyncio.create_task(
            bus.call("wharf.test.rpc", Envelope(type="test.block", body="block"), timeout=5)
        )
        await asyncio.sleep(0.2)
        with pytest.raises(DeadlineExceeded):
            await bus.call("wharf.test.rpc", Envelope(type="test.late", body=7), timeout=0.3)
        await asyncio.sleep(0.5)
        release.set()
        assert await blocker == 0
        await asyncio.sleep(0.5)
        assert ran == []
    finally:
        await server.stop()


async def close_connections(amqp_url: str) -> int:
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    api = os.environ.get("WHARF_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
    closed = 0
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.get(f"{api}/api/connections") as response:
                connections = [c for c in await response.json() if c.get("vhost") == vhost]
            if connections:
                break
            await asyncio.sleep(0.2)
        for connection in connections:
            name = connection["name"]
            async with http.delete(f"{api}/api/connections/{quote(name, safe='')}"):
                closed += 1
    return closed


async def test_publishing_and_consuming_resume_after_connection_is_dropped(
    bus: Bus, amqp_url: str
) -> None:
    seen: set[int] = set()

    async def handler(delivery: Delivery) -> None:
        seen.add(delivery.body["n"])

    await bus.consume(QUEUE, handler)

    async def produce() -> None:
        for n in range(200):
            await bus.send(QUEUE, Envelope(type="test.work", body={"n": n}))
            await asyncio.sleep(0.005)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.3)
    assert await close_connections(amqp_url) >= 1
    await producer

    await wait_for(lambda: len(seen) == 200, timeout=30)
    assert seen == set(range(200))
