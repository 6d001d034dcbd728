"""Dead letters: list them with their reasons, and replay them."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from wharf_common.bus import dead_letter_queue
from wharf_common.consumer import ATTEMPT_HEADER, DEAD_AT_HEADER, QUEUE_HEADER, REASON_HEADER
from wharf_common.errors import NotFound

if TYPE_CHECKING:
    from wharf_common.bus import Bus


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as shown to an operator."""

    message_id: str | None
    type: str | None
    queue: str
    reason: str
    dead_at: str | None
    attempts: int
    body: Any

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return self.__dict__.copy()


async def inspect(bus: Bus, queue: str, *, limit: int = 50) -> list[DeadLetter]:
    """Return up to `limit` dead letters of `queue` without removing them."""
    channel = await bus.channel()
    try:
        dead = await _dead_queue(channel, queue)
        found: list[DeadLetter] = []
        held: list[aio_pika.abc.AbstractIncomingMessage] = []
        for _ in range(limit):
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
            found.append(_describe(message, queue))
        for message in held:
            await message.nack(requeue=True)
        return found
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def replay(bus: Bus, queue: str, *, limit: int | None = None) -> int:
    """Send dead letters of `queue` back to it with a fresh attempt count.

    Each message is republished with confirms before it is removed from the
    dead-letter queue, so a crash in between duplicates rather than loses.
    """
    channel = await bus.channel()
    replayed = 0
    try:
        dead = await _dead_queue(channel, queue)
        while limit is None or replayed < limit:
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = {
                key: value
                for key, value in (message.headers or {}).items()
                if key not in {REASON_HEADER, QUEUE_HEADER, DEAD_AT_HEADER, ATTEMPT_HEADER}
            }
            await bus.publish_message(
                "",
                queue,
                aio_pika.Message(
                    body=message.body,
                    headers=headers,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type=message.type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
            )
            await message.ack()
            replayed += 1
        return replayed
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def _dead_queue(channel: AbstractChannel, queue: str) -> AbstractQueue:
    """The dead-letter queue of `queue`, which must exist: listing never creates queues."""
    try:
        return await channel.declare_queue(dead_letter_queue(queue), passive=True)
    except aio_pika.exceptions.ChannelClosed as exc:
        raise NotFound(f"{queue!r} has no dead-letter queue: is it a Wharf command queue?") from exc


def _describe(message: aio_pika.abc.AbstractIncomingMessage, queue: str) -> DeadLetter:
    headers = message.headers or {}
    try:
        body: Any = json.loads(message.body)
    except ValueError:
        body = message.body[:200].decode("utf-8", "replace")
    attempts = headers.get(ATTEMPT_HEADER, 1)
    return DeadLetter(
        message_id=message.message_id,
        type=message.type,
        queue=str(headers.get(QUEUE_HEADER, queue)),
        reason=str(headers.get(REASON_HEADER, "")),
        dead_at=str(headers[DEAD_AT_HEADER]) if DEAD_AT_HEADER in headers else None,
        attempts=attempts if isinstance(attempts, int) else 1,
        body=body,
    )
