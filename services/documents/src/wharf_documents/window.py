"""How many items of one batch to keep on the bus: a window that follows its consumers.

A batch's items wait as rows and only a window of them is on the bus (see
`batches`). The window is sized for the capacity that drains it: so many
items per consumer of the batch queue, one consumer per task. Every task
reads the queue's consumer count (a passive declare) every few seconds, so
a scale-out widens each running batch's window at its next finished item,
and after a scale-in the excess drains without being refilled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError

from wharf_common.bus import CONNECTION_ERRORS, Bus

logger = logging.getLogger(__name__)

# Seconds a consumer count is used before it is read again.
REFRESH_SECONDS = 3.0


class BatchWindow:
    """Items of one batch to keep in flight, for the consumers there are."""

    def __init__(self, per_consumer: int) -> None:
        self.per_consumer = per_consumer
        # Until the first reading: this task's own consumer.
        self.consumers = 1

    @property
    def target(self) -> int:
        """Items of one batch on the bus or rendering at once."""
        return self.per_consumer * max(1, self.consumers)

    def shortfall(self, in_flight: int) -> int:
        """Items to feed so that a batch with `in_flight` items is back at the target."""
        return max(0, self.target - in_flight)

    async def follow(self, read: Callable[[], Awaitable[int]], interval: float) -> None:
        """Read the consumer count every `interval` seconds until cancelled.

        A failed reading keeps the last count: the window stays as it was
        rather than collapse to one task's share while the broker is away.
        """
        while True:
            try:
                consumers = await read()
            except (*CONNECTION_ERRORS, AMQPError, TimeoutError) as exc:
                logger.warning("consumers of the batch queue not read: %r", exc)
            else:
                if consumers != self.consumers:
                    logger.debug("batch queue consumers %d -> %d", self.consumers, consumers)
                self.consumers = consumers
            await asyncio.sleep(interval)


class ConsumerCount:
    """Reads how many consumers a queue has, through a channel of its own.

    A passive declare of a missing queue closes its channel; a channel of
    its own keeps that from the publishing channel, and is reopened next time.
    """

    def __init__(self, bus: Bus, queue: str) -> None:
        self._bus = bus
        self._queue = queue
        self._channel: AbstractChannel | None = None

    async def __call__(self) -> int:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._bus.channel(confirms=False)
        try:
            # robust=False: a robust channel answers a passive declare it has
            # seen before from memory, with the count of that time.
            queue = await self._channel.declare_queue(self._queue, passive=True, robust=False)
        except (*CONNECTION_ERRORS, AMQPError):
            self._channel = None
            raise
        return int(queue.declaration_result.consumer_count or 0)
