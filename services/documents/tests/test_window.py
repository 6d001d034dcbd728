"""The batch window: items in flight per consumer of the batch queue, read as tasks come and go."""

from __future__ import annotations

import asyncio

import aiormq
import pytest

from wharf_common.bus import Bus
from wharf_documents.window import BatchWindow, ConsumerCount


def test_window_grows_with_the_consumers() -> None:
    window = BatchWindow(per_consumer=4)

    assert (window.target, window.shortfall(1)) == (4, 3)
    window.consumers = 3
    assert (window.target, window.shortfall(1)) == (12, 11)
    # After a scale-in, a batch with more in flight is not topped up until it drains.
    window.consumers = 1
    assert window.shortfall(12) == 0
    # No consumer seen yet (the queue's first task is still starting): one task's share.
    window.consumers = 0
    assert window.target == 4


async def test_a_failed_reading_keeps_the_last_count() -> None:
    window = BatchWindow(per_consumer=2)
    readings: list[int | None] = [3, None, 2]
    seen: list[int] = []

    async def read() -> int:
        seen.append(window.consumers)
        if not readings:
            raise asyncio.CancelledError
        reading = readings.pop(0)
        if reading is None:
            raise aiormq.exceptions.AMQPConnectionError("the broker is away")
        return reading

    with pytest.raises(asyncio.CancelledError):
        await window.follow(read, 0.0)

    assert seen == [1, 3, 3, 2]


async def test_consumer_count_reads_the_queue(amqp_url: str) -> None:
    queue = "wharf.documents.render-batch"
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    try:
        count = ConsumerCount(bus, queue)
        # A queue not declared yet closes the reading's channel; the next reading opens another.
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await count()
        await bus.declare_command_queue(queue)
        assert await count() == 0
        channel = await bus.channel(prefetch=1)
        declared = await channel.declare_queue(queue, passive=True)
        await declared.consume(_ignore)
        assert await count() == 1
    finally:
        await bus.close()


async def _ignore(message: object) -> None:
    return None
