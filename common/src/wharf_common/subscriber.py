"""Internal event consumers: typed handlers on a durable queue of their own.

A `Subscriber` names the events it wants and a handler for each. It gets
the queue ``wharf.<name>.events``, bound to ``wharf.events`` for exactly
those types, consumed by the same `Consumer` as every command queue:

- at least once: a delivery is acknowledged only after its handler returns,
  and one that was in flight when the consumer died is delivered again;
- a transient failure is retried with back-off, an event that does not
  fit its model is dead-lettered at once, with the reason;
- a claim-checked body is fetched before the handler runs;
- the queue is durable, so a consumer that was down catches up on what
  arrived meanwhile (events from before its queue existed are not replayed).

At least once means a handler can see an event twice; `handled_once` makes
its effect happen once, by recording the event id in the consumer's own
table in the transaction that commits the effect.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from wharf_common import events
from wharf_common.consumer import Consumer, Delivery
from wharf_common.db import Connection, claim_message
from wharf_common.envelope import Envelope

if TYPE_CHECKING:
    import asyncpg

    from wharf_common.bus import Bus
    from wharf_common.runtime import Runtime

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=events.Event)
EventHandler = Callable[[Any, Delivery], Awaitable[None]]
TypedHandler = Callable[[E, Delivery], Awaitable[None]]


def events_queue(name: str) -> str:
    """The durable queue of the internal consumer called `name`."""
    return f"wharf.{name}.events"


class Subscriber:
    """One internal consumer: the event types it wants and a handler for each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue = events_queue(name)
        self._handlers: dict[str, EventHandler] = {}

    @property
    def event_types(self) -> list[str]:
        """The event types this consumer is bound to."""
        return sorted(self._handlers)

    def on(self, model: type[E]) -> Callable[[TypedHandler[E]], TypedHandler[E]]:
        """Register the decorated coroutine as the handler of `model`'s event type."""
        events.model_for(model.event_type, model.version)

        def register(handler: TypedHandler[E]) -> TypedHandler[E]:
            if model.event_type in self._handlers:
                raise ValueError(f"{self.name} already handles {model.event_type}")
            self._handlers[model.event_type] = handler
            return handler

        return register

    async def handle(self, delivery: Delivery) -> None:
        """Parse the delivery's event and run its handler."""
        handler = self._handlers.get(delivery.envelope.type)
        if handler is None:
            # A binding left over from an earlier version of this consumer.
            logger.warning("%s has no handler for %s", self.name, delivery.envelope.type)
            return
        await handler(events.parse_event(delivery.envelope), delivery)

    def attach(self, rt: Runtime, **options: Any) -> None:
        """Consume through a service runtime, with its consumer settings."""
        self._check()
        rt.subscribe(self.queue, self.event_types, self.handle, **options)

    async def start(self, bus: Bus, **options: Any) -> Consumer:
        """Consume on a connected bus (options as for `Consumer`); stop the result to end."""
        self._check()
        return await bus.subscribe(self.queue, self.event_types, self.handle, **options)

    def _check(self) -> None:
        if not self._handlers:
            raise ValueError(f"{self.name} handles no events")


@contextlib.asynccontextmanager
async def handled_once(
    pool: asyncpg.Pool[asyncpg.Record], schema: str, envelope: Envelope
) -> AsyncIterator[Connection | None]:
    """A transaction for the effect of `envelope`, or None when it was already handled.

    The event id goes into ``<schema>.handled_messages`` in the same
    transaction as the effect: if the effect rolls back, so does the record,
    and a redelivery after a commit finds it and yields None::

        async with handled_once(pool, "billing", delivery.envelope) as conn:
            if conn is None:
                return
            await conn.execute(...)
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, schema, envelope.id):
            logger.debug("%s %s was handled before", envelope.type, envelope.id)
            yield None
            return
        yield conn
