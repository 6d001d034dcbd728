"""The bus: a robust RabbitMQ connection with confirmed publishing.

Topology, all declared by whoever needs it first (declarations are idempotent):

- commands go to durable quorum queues named ``wharf.<service>.<work>``
  through the default exchange;
- events go to the ``wharf.events`` topic exchange, routed by event type;
- RPC requests go to non-durable, auto-deleted ``wharf.<service>.rpc``
  queues and answers come back on direct reply-to;
- log records go to the ``wharf.logs`` exchange.

Consumers (commands, events, RPC) live in `consumer` and `rpc`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)
from aiormq import spec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from wharf_common import claimcheck, deadlines
from wharf_common.amqp import CorkedConnection
from wharf_common.envelope import CONTENT_TYPE, Envelope
from wharf_common.errors import ServiceUnavailable

if TYPE_CHECKING:
    from wharf_common.consumer import Consumer, Handler
    from wharf_common.rpc import RpcClient
    from wharf_common.storage import ObjectStore

logger = logging.getLogger(__name__)

EVENTS_EXCHANGE = "wharf.events"
LOGS_EXCHANGE = "wharf.logs"

# Frames a connection may queue for its writer before a sender has to wait.
# aiormq's default of 10 lets a busy service's acks and publishes wait on one
# another: the writer then takes about ten frames per event-loop turn and
# concurrent publishers on a channel queue behind its lock one turn each.
WRITE_BUFFER_FRAMES = 4096

# Errors after which publishing is worth another try once the connection is back.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
    aiormq.exceptions.ChannelClosed,
    RuntimeError,
)


def command_queue_arguments() -> dict[str, Any]:
    """Arguments of every durable command queue."""
    return {"x-queue-type": "quorum"}


def dead_letter_queue(queue: str) -> str:
    """Name of the dead-letter queue that belongs to `queue`."""
    return f"{queue}.dead"


class Bus:
    """One service's connection to RabbitMQ.

    Publishing waits for the broker's confirm. When the connection drops,
    the robust connection reconnects and restores queues and consumers in
    the background, and a publish in flight is retried once it is back
    (which may deliver twice; consumers are idempotent).
    """

    def __init__(
        self,
        url: str,
        *,
        service: str,
        store: ObjectStore | None = None,
        claim_check_threshold: int = claimcheck.DEFAULT_THRESHOLD,
        publish_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.service = service
        self.store = store
        self.claim_check_threshold = claim_check_threshold
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared: set[str] = set()
        self._consumers: list[Consumer] = []
        self._rpc: RpcClient | None = None
        self._lock = asyncio.Lock()

    @property
    def connection(self) -> AbstractRobustConnection:
        """The underlying robust connection; only valid after `connect`."""
        if self._connection is None:
            raise RuntimeError("the bus is not connected")
        return self._connection

    @property
    def is_connected(self) -> bool:
        """True while the connection to the broker is open."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and bool(self._connection.connected.is_set())
        )

    async def connect(self) -> None:
        """Open the connection and the publishing channel."""
        # aiormq reads the buffer size from its connection class and offers no
        # per-connection setting; reconnections read it again.
        aiormq.Connection.FRAME_BUFFER_SIZE = WRITE_BUFFER_FRAMES
        self._connection = await aio_pika.connect_robust(
            self.url,
            client_properties={"connection_name": self.service},
            connection_class=CorkedConnection,
        )
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.declare_exchange(EVENTS_EXCHANGE, ExchangeType.TOPIC, durable=True)
        await self._channel.declare_exchange(LOGS_EXCHANGE, ExchangeType.FANOUT, durable=True)

    async def declare_log_queue(self) -> None:
        """Declare the log sink's queue, so records published before it starts wait there."""
        from wharf_common.logs import LOG_QUEUE

        await self.declare_command_queue(LOG_QUEUE)
        queue = await self.publish_channel.get_queue(LOG_QUEUE, ensure=False)
        await queue.bind(LOGS_EXCHANGE)

    async def close(self) -> None:
        """Stop consumers and close the connection."""
        for consumer in self._consumers:
            await consumer.stop(timeout=0)
        if self._rpc is not None:
            await self._rpc.close()
        if self._connection is not None:
            await self._connection.close()
        self._connection = None

    async def channel(
        self, *, prefetch: int | None = None, confirms: bool = True
    ) -> AbstractChannel:
        """Open a new channel, for a consumer that needs its own prefetch."""
        channel = await self.connection.channel(publisher_confirms=confirms)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    @property
    def publish_channel(self) -> AbstractChannel:
        """The shared channel used for publishing."""
        if self._channel is None:
            raise RuntimeError("the bus is not connected")
        return self._channel

    async def declare_command_queue(self, queue: str) -> None:
        """Declare a durable quorum command queue and its dead-letter queue."""
        if queue in self._declared:
            return
        channel = self.publish_channel
        await channel.declare_queue(queue, durable=True, arguments=command_queue_arguments())
        await channel.declare_queue(
            dead_letter_queue(queue), durable=True, arguments=command_queue_arguments()
        )
        self._declared.add(queue)

    async def send(self, queue: str, envelope: Envelope) -> None:
        """Send a command to `queue`, waiting for the broker to confirm it."""
        await self.declare_command_queue(queue)
        await self.publish_raw("", queue, envelope)

    async def publish_event(self, envelope: Envelope) -> None:
        """Publish an event on the topic exchange, routed by its type."""
        await self.publish_raw(EVENTS_EXCHANGE, envelope.type, envelope)

    async def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        envelope: Envelope,
        *,
        headers: dict[str, Any] | None = None,
        persistent: bool = True,
        expiration: float | None = None,
        reply_to: str | None = None,
        reply_for: str | None = None,
        mandatory: bool = False,
        channel: AbstractChannel | None = None,
    ) -> None:
        """Publish one envelope with confirms, retrying while the connection recovers."""
        options: dict[str, Any] = {
            "headers": headers,
            "persistent": persistent,
            "expiration": expiration,
            "reply_to": reply_to,
            "reply_for": reply_for,
        }
        body = envelope.encode()
        # The body is smaller than the whole message, so only a large message
        # pays for measuring its body on its own.
        if len(body) > self.claim_check_threshold:
            checked = await claimcheck.check_in(envelope, self.store, self.claim_check_threshold)
            if checked is not envelope:
                envelope = checked
                body = envelope.encode()
        properties = build_properties(envelope, **options)
        budget = self.publish_timeout
        left = deadlines.remaining(envelope.deadline)
        if left is not None and expiration is not None:
            budget = min(budget, left)
        await self._publish_with_retry(
            channel or self.publish_channel,
            exchange,
            routing_key,
            body,
            properties,
            mandatory,
            budget,
        )

    async def publish_message(
        self, exchange: str, routing_key: str, message: aio_pika.Message
    ) -> None:
        """Publish a prebuilt message with confirms (used to move dead letters)."""
        await self._publish_with_retry(
            self.publish_channel,
            exchange,
            routing_key,
            message.body,
            message.properties,
            False,
            self.publish_timeout,
        )

    async def _publish_with_retry(
        self,
        channel: AbstractChannel,
        exchange_name: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
        budget: float,
    ) -> None:
        # The common case, a connected channel, costs one publish and its confirm;
        # only a failure pays for the retry machinery.
        if self._connection is None or self._connection.connected.is_set():
            try:
                await _send(channel, exchange_name, routing_key, body, properties, mandatory)
                return
            except aio_pika.exceptions.PublishError as exc:
                raise ServiceUnavailable(f"nobody consumes {routing_key!r}") from exc
            except CONNECTION_ERRORS:
                logger.debug("publishing to %r failed; retrying", routing_key)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(CONNECTION_ERRORS),
                wait=wait_exponential(multiplier=0.1, max=2.0),
                stop=stop_after_delay(budget),
                reraise=True,
            ):
                with attempt:
                    if self._connection is not None:
                        await asyncio.wait_for(self._connection.connected.wait(), budget)
                    await _send(channel, exchange_name, routing_key, body, properties, mandatory)
        except aio_pika.exceptions.PublishError as exc:
            raise ServiceUnavailable(f"nobody consumes {routing_key!r}") from exc
        except CONNECTION_ERRORS as exc:
            raise ServiceUnavailable(f"the message bus is unavailable: {exc!r}") from exc
        except TimeoutError as exc:
            raise ServiceUnavailable(f"the message bus is unavailable: {exc!r}") from exc

    async def consume(self, queue: str, handler: Handler, **options: Any) -> Consumer:
        """Start consuming commands from `queue`; see `Consumer` for the options."""
        from wharf_common.consumer import Consumer

        await self.declare_command_queue(queue)
        consumer = Consumer(self, queue, handler, **options)
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def subscribe(
        self, queue: str, patterns: list[str], handler: Handler, **options: Any
    ) -> Consumer:
        """Consume events matching `patterns` through a durable queue of our own."""
        from wharf_common.consumer import Consumer

        await self.declare_command_queue(queue)
        bound = await self.publish_channel.get_queue(queue, ensure=False)
        for pattern in patterns:
            await bound.bind(EVENTS_EXCHANGE, pattern)
        consumer = Consumer(self, queue, handler, **options)
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def call(self, queue: str, envelope: Envelope, *, timeout: float | None = None) -> Any:
        """Send an RPC request and wait for the answer; see `RpcClient.call`."""
        from wharf_common.rpc import RpcClient

        async with self._lock:
            if self._rpc is None:
                self._rpc = RpcClient(self)
                await self._rpc.start()
        return await self._rpc.call(queue, envelope, timeout=timeout)

    def track(self, consumer: Consumer) -> None:
        """Remember a consumer so `close` stops it."""
        self._consumers.append(consumer)


async def _send(
    channel: AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: spec.Basic.Properties,
    mandatory: bool,
) -> None:
    """Publish on the channel underneath and wait for the broker's confirm only.

    aio-pika's own publish also waits, holding the channel's lock, until the
    connection's writer has flushed the frames; under load that serialises
    concurrent publishers at a few event-loop turns each. Without the flush
    wait the lock is held only while the frames are queued, so many
    publishes are in flight at once, still in the order they were started,
    and each still returns only once confirmed.
    """
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    await underlay.basic_publish(
        body,
        exchange=exchange,
        routing_key=routing_key,
        properties=properties,
        mandatory=mandatory,
        wait=False,
    )


def build_properties(
    envelope: Envelope,
    *,
    headers: dict[str, Any] | None = None,
    persistent: bool = True,
    expiration: float | None = None,
    reply_to: str | None = None,
    reply_for: str | None = None,
) -> spec.Basic.Properties:
    """The AMQP properties of an envelope's message.

    An RPC reply names the request it answers in `reply_for`, which becomes
    the AMQP correlation id; otherwise that is the envelope's correlation id.
    Built directly rather than through `aio_pika.Message`, whose guarded
    attributes cost more than the rest of a publish's bookkeeping.
    """
    all_headers: dict[str, Any] = {"x-wharf-type": envelope.type}
    if envelope.tenant:
        all_headers["x-wharf-tenant"] = envelope.tenant
    if headers:
        all_headers.update(headers)
    return spec.Basic.Properties(
        content_type=CONTENT_TYPE,
        message_id=str(envelope.id),
        correlation_id=reply_for or envelope.correlation_id,
        message_type=envelope.type,
        headers=all_headers,
        delivery_mode=int(DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT),
        # Milliseconds, as a string: the property's wire format.
        expiration=None if expiration is None else str(int(expiration * 1000)),
        reply_to=reply_to,
        priority=0,
    )
