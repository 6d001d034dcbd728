"""Command and event consumers: ack after the work, retries, dead letters.

A delivery goes through these steps: decode the envelope, refuse it when its
deadline has passed, resolve a claim-checked body, run the handler within
the deadline, and acknowledge only when the handler has returned, that is
after its effect is committed.

- Invalid messages, client errors and expired deadlines can never succeed:
  they go to the dead-letter queue at once, with the reason in a header.
- Any other error is retried with exponential back-off through a delay
  queue per back-off step (RabbitMQ 3.10 has no delayed delivery), up to
  `max_attempts`; then the message is dead-lettered as "retries exhausted".
- A message is always published onward (retry or dead letter) with confirms
  before the original is acknowledged, so nothing is lost in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from wharf_common import claimcheck, deadlines
from wharf_common.bus import command_queue_arguments, dead_letter_queue
from wharf_common.envelope import Envelope
from wharf_common.errors import ClientError, DeadlineExceeded, InvalidMessage
from wharf_common.logs import log_context

if TYPE_CHECKING:
    from wharf_common.bus import Bus

logger = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-wharf-attempt"
REASON_HEADER = "x-wharf-dead-reason"
QUEUE_HEADER = "x-wharf-queue"
DEAD_AT_HEADER = "x-wharf-dead-at"

MESSAGES = Counter(
    "wharf_messages_total", "Messages handled, by queue and outcome", ["queue", "outcome"]
)
HANDLE_SECONDS = Histogram("wharf_message_seconds", "Time spent handling a message", ["queue"])

# Errors that the same message would meet again on every try. asyncpg's
# DataError covers values PostgreSQL cannot store (a NUL character, a number
# out of range); RecursionError is a body nested too deep to handle.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    InvalidMessage,
    ClientError,
    ValidationError,
    DeadlineExceeded,
    asyncpg.DataError,
    RecursionError,
)


@dataclass(frozen=True)
class Delivery:
    """What a handler receives: the envelope (body resolved) and its attempt number."""

    envelope: Envelope
    attempt: int
    queue: str

    @property
    def body(self) -> Any:
        """The message body, fetched from object storage if it was claim-checked."""
        return self.envelope.body


Handler = Callable[[Delivery], Awaitable[None]]
DeadHandler = Callable[[Envelope, str], Awaitable[None]]


def retry_delay(attempt: int, base: float, maximum: float) -> float:
    """Back-off before attempt `attempt + 1`: base, 4 x base, 16 x base... capped."""
    return float(min(maximum, base * 4 ** (attempt - 1)))


def retry_queue(queue: str, delay: float) -> str:
    """Name of the delay queue that feeds `queue` after `delay` seconds."""
    return f"{queue}.retry.{int(delay * 1000)}ms"


class Consumer:
    """Consumes one queue with bounded prefetch and concurrency.

    `stop` cancels the subscription, hands back deliveries that have not
    started, and waits up to a timeout for the ones in flight.
    """

    def __init__(
        self,
        bus: Bus,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        concurrency: int = 16,
        max_attempts: int = 5,
        retry_base_delay: float = 0.5,
        retry_max_delay: float = 30.0,
        on_dead: DeadHandler | None = None,
    ) -> None:
        self.bus = bus
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.on_dead = on_dead
        self._limit = asyncio.Semaphore(concurrency)
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._retry_queues: set[str] = set()
        # Labelled metrics looked up once: each lookup takes a lock.
        self._handled = MESSAGES.labels(queue, "ok")
        self._seconds = HANDLE_SECONDS.labels(queue)

    @property
    def in_flight(self) -> int:
        """Deliveries being handled right now."""
        return len(self._in_flight)

    async def start(self) -> None:
        """Open a channel with the prefetch and start consuming."""
        self._channel = await self.bus.channel(prefetch=self.prefetch)
        self._queue = await self._channel.declare_queue(
            self.queue, durable=True, arguments=command_queue_arguments()
        )
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking deliveries and wait for in-flight work, then close the channel."""
        if self._stopping:
            return
        self._stopping = True
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._in_flight and timeout > 0:
            _, pending = await asyncio.wait(self._in_flight, timeout=timeout)
            if pending:
                logger.warning(
                    "%d deliveries on %s still running at stop; handing them back",
                    len(pending),
                    self.queue,
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            await _requeue(message)
            return
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            async with self._limit:
                if self._stopping:
                    await _requeue(message)
                    return
                await self._handle(message)
        except asyncio.CancelledError:
            await _requeue(message)
        finally:
            self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        attempt = _attempt(message)
        try:
            envelope = Envelope.decode(message.body)
        except ValidationError as exc:
            await self._dead_letter(message, None, f"invalid: {_summary(exc)}")
            return

        with log_context(
            correlation=envelope.correlation_id,
            tenant_id=envelope.tenant,
            message=str(envelope.id),
        ):
            if deadlines.expired(envelope.deadline):
                await self._dead_letter(message, envelope, "deadline_exceeded: expired in queue")
                return
            started = time.perf_counter()
            try:
                envelope = await claimcheck.check_out(envelope, self.bus.store)
                delivery = Delivery(envelope=envelope, attempt=attempt, queue=self.queue)
                left = deadlines.remaining(envelope.deadline)
                async with asyncio.timeout(left):
                    await self.handler(delivery)
            except TimeoutError:
                await self._dead_letter(message, envelope, "deadline_exceeded: ran out of time")
                return
            except PERMANENT_ERRORS as exc:
                await self._dead_letter(message, envelope, f"invalid: {_summary(exc)}")
                return
            except Exception as exc:
                await self._retry_or_dead_letter(message, envelope, attempt, exc)
                return
            finally:
                self._seconds.observe(time.perf_counter() - started)

            await ack(message)
            self._handled.inc()
            logger.info(
                "handled %s from %s in %.1f ms",
                envelope.type,
                self.queue,
                (time.perf_counter() - started) * 1000,
                extra={"attempt": attempt},
            )

    async def _retry_or_dead_letter(
        self,
        message: AbstractIncomingMessage,
        envelope: Envelope,
        attempt: int,
        exc: Exception,
    ) -> None:
        if attempt >= self.max_attempts:
            await self._dead_letter(
                message, envelope, f"retries exhausted after {attempt} attempts: {_summary(exc)}"
            )
            return
        delay = retry_delay(attempt, self.retry_base_delay, self.retry_max_delay)
        logger.warning(
            "%s failed on attempt %d, retrying in %.1f s: %s",
            envelope.type,
            attempt,
            delay,
            _summary(exc),
        )
        target = await self._declare_retry_queue(delay)
        await self.bus.publish_message("", target, _copy(message, {ATTEMPT_HEADER: attempt + 1}))
        await ack(message)
        MESSAGES.labels(self.queue, "retried").inc()

    async def _declare_retry_queue(self, delay: float) -> str:
        name = retry_queue(self.queue, delay)
        if name not in self._retry_queues:
            await self.bus.publish_channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.queue,
                },
            )
            self._retry_queues.add(name)
        return name

    async def _dead_letter(
        self, message: AbstractIncomingMessage, envelope: Envelope | None, reason: str
    ) -> None:
        if envelope is not None and self.on_dead is not None:
            try:
                await self.on_dead(envelope, reason)
            except Exception:
                logger.exception("reporting a dead letter on %s failed", self.queue)
        headers = {
            REASON_HEADER: reason[:1000],
            QUEUE_HEADER: self.queue,
            DEAD_AT_HEADER: deadlines.now().isoformat(),
        }
        await self.bus.publish_message("", dead_letter_queue(self.queue), _copy(message, headers))
        await ack(message)
        MESSAGES.labels(self.queue, "dead").inc()
        logger.warning("dead-lettered a message from %s: %s", self.queue, reason)


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        headers={**(message.headers or {}), **headers},
        content_type=message.content_type,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _attempt(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value > 0 else 1


async def ack(message: AbstractIncomingMessage) -> None:
    """Acknowledge a delivery without waiting for the connection to send the frame.

    aio-pika's own ack waits until the connection's writer has flushed it,
    which costs a future and a wake-up per message. The broker answers no
    ack, and one lost with its connection only means a redelivery, which
    every consumer here takes in its stride.
    """
    assert message.delivery_tag is not None
    await message.channel.basic_ack(message.delivery_tag, wait=False)


async def _requeue(message: AbstractIncomingMessage) -> None:
    with contextlib.suppress(Exception):
        await message.nack(requeue=True)


def _summary(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
            for err in exc.errors()[:5]
        ]
        return "; ".join(parts)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
