"""The batching consumer of the log stream: write a batch, then acknowledge it.

Deliveries are parsed as they arrive and held unacknowledged until their
records are committed. A batch is written when it holds `batch_records`
records or its first delivery has waited `batch_interval` seconds; up to
`writers` batches are written at once, so parsing, encoding and
PostgreSQL's work overlap (each batch is acknowledged when its own
transaction commits, so their order does not matter). While
PostgreSQL is away the write is retried with back-off and nothing is
acknowledged; once prefetch is full the broker keeps the rest queued.
A message whose records cannot be parsed goes to the dead-letter queue
with the reason, after its valid records are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ExchangeType
from pydantic import ValidationError

from wharf_common import claimcheck, deadlines
from wharf_common.bus import LOGS_EXCHANGE, command_queue_arguments, dead_letter_queue
from wharf_common.consumer import DEAD_AT_HEADER, QUEUE_HEADER, REASON_HEADER, ack
from wharf_common.envelope import Envelope
from wharf_common.logs import LOG_QUEUE
from wharf_log_sink import metrics
from wharf_log_sink.db import InvalidRecord, RecordStore, Row, to_row

if TYPE_CHECKING:
    from wharf_common.bus import Bus

logger = logging.getLogger(__name__)

LOG_RECORDS_TYPE = "log.records"

# SQLSTATE classes worth waiting out: connection, resources, operator
# intervention (shutdown, crash recovery), transaction rollback.
_TRANSIENT_STATES = ("08", "53", "57", "40", "55")


@dataclass
class _Parsed:
    message: AbstractIncomingMessage
    rows: list[Row] = field(default_factory=list)


def is_transient(exc: BaseException) -> bool:
    """True for a write failure that a later attempt may get past (the server away)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_STATES
    if isinstance(exc, ValueError | TypeError):
        return False  # asyncpg refused to encode a value: bad data, not a bad connection
    return isinstance(exc, OSError | asyncpg.InterfaceError | TimeoutError | ConnectionError)


class LogSink:
    """Consumes `LOG_QUEUE` in batches into a `RecordStore`."""

    def __init__(
        self,
        bus: Bus,
        store: RecordStore,
        *,
        prefetch: int = 4000,
        batch_records: int = 10_000,
        batch_interval: float = 0.2,
        writers: int = 2,
        retry_max_delay: float = 5.0,
    ) -> None:
        self.bus = bus
        self.store = store
        self.prefetch = prefetch
        self.batch_records = batch_records
        self.batch_interval = batch_interval
        self.retry_max_delay = retry_max_delay
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._pending: list[_Parsed] = []
        self._pending_records = 0
        self._has_pending = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(writers)
        self._writing: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.batches = 0
        # Deliveries received and not yet acknowledged.
        self.held = 0

    async def start(self) -> None:
        """Declare the queue, bind it to the logs exchange and start consuming."""
        channel = await self.bus.channel(prefetch=self.prefetch)
        self._channel = channel
        await channel.declare_exchange(LOGS_EXCHANGE, ExchangeType.FANOUT, durable=True)
        arguments = command_queue_arguments()
        queue = await channel.declare_queue(LOG_QUEUE, durable=True, arguments=arguments)
        await queue.bind(LOGS_EXCHANGE)
        await channel.declare_queue(dead_letter_queue(LOG_QUEUE), durable=True, arguments=arguments)
        self._queue = queue
        self._task = asyncio.create_task(self._run(), name="log-sink-writer")
        self._tag = await queue.consume(self._on_message)
        logger.debug("consuming %s with prefetch %d", LOG_QUEUE, self.prefetch)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming, write and acknowledge what is held (within `timeout`), close."""
        self._stopping = True
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(timeout):
                if self._writing:
                    await asyncio.wait(set(self._writing))
                batch = self._take()
                if batch:
                    await self._write_and_ack(batch, retry=False)
        for task in list(self._writing):
            task.cancel()
        # Whatever is still unacknowledged goes back to the queue with the channel.
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        parsed = await self._parse(message)
        if parsed is None:
            return
        self._pending.append(parsed)
        self.held += 1
        self._pending_records += len(parsed.rows)
        self._has_pending.set()
        if self._pending_records >= self.batch_records:
            self._full.set()

    async def _parse(self, message: AbstractIncomingMessage) -> _Parsed | None:
        try:
            envelope = Envelope.decode(message.body)
            if envelope.type != LOG_RECORDS_TYPE:
                raise InvalidRecord(f"type {envelope.type!r} is not {LOG_RECORDS_TYPE!r}")
            envelope = await claimcheck.check_out(envelope, self.bus.store)
            if not isinstance(envelope.body, list):
                raise InvalidRecord("the body is not a list of records")
        except (ValidationError, InvalidRecord) as exc:
            await self._dead_letter(message, f"invalid: {_reason(exc)}", 0)
            return None

        parsed = _Parsed(message)
        bad: list[str] = []
        for index, record in enumerate(envelope.body):
            try:
                parsed.rows.append(to_row(record))
            except InvalidRecord as exc:
                bad.append(f"record {index}: {exc}")
        if bad:
            # The whole message is kept, so a replay stores the fixed records and
            # skips those already written.
            await self._dead_letter(message, "invalid: " + "; ".join(bad[:10]), len(bad), ack=False)
        return parsed

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, records: int, *, ack: bool = True
    ) -> None:
        headers = {
            **(message.headers or {}),
            REASON_HEADER: reason[:1000],
            QUEUE_HEADER: LOG_QUEUE,
            DEAD_AT_HEADER: deadlines.now().isoformat(),
        }
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.bus.publish_message("", dead_letter_queue(LOG_QUEUE), copy)
        metrics.RECORDS_DEAD.inc(records)
        logger.warning("dead-lettered a log message: %s", reason[:200])
        if ack:
            await _ack(message)

    async def _run(self) -> None:
        while True:
            await self._has_pending.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.batch_interval):
                    await self._full.wait()
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._write_and_ack(batch, retry=True))
            self._writing.add(task)
            task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            logger.error("a log batch writer failed", exc_info=task.exception())

    def _take(self) -> list[_Parsed]:
        batch, self._pending, self._pending_records = self._pending, [], 0
        self._has_pending.clear()
        self._full.clear()
        return batch

    async def _write_and_ack(self, batch: list[_Parsed], *, retry: bool) -> None:
        """Write `batch`, retrying while PostgreSQL is away, then acknowledge it.

        Unless `retry`, one failed attempt leaves the batch unacknowledged, and
        closing the channel hands it back to the queue.
        """
        delay = 0.2
        while True:
            try:
                await self._write(batch)
                break
            except Exception as exc:
                metrics.WRITE_FAILURES.inc()
                if not retry or self._stopping:
                    return
                logger.warning(
                    "writing a batch of log records failed (%s); retrying in %.1f s",
                    _reason(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
        for parsed in batch:
            await _ack(parsed.message)
        self.held -= len(batch)

    async def _write(self, batch: list[_Parsed]) -> None:
        rows = [row for parsed in batch for row in parsed.rows]
        started = time.perf_counter()
        try:
            added = await self.store.write(rows)
        except Exception as exc:
            if is_transient(exc):
                raise
            await self._write_one_by_one(batch, exc)
            return
        elapsed = time.perf_counter() - started
        self.batches += 1
        metrics.WRITE_SECONDS.observe(elapsed)
        metrics.BATCH_RECORDS.observe(len(rows))
        metrics.RECORDS_WRITTEN.inc(added)
        metrics.RECORDS_REPEATED.inc(len(rows) - added)
        logger.debug("wrote %d log records in %.1f ms", added, elapsed * 1000)

    async def _write_one_by_one(self, batch: list[_Parsed], first: Exception) -> None:
        """Find the message PostgreSQL refuses (bad data) and dead-letter only that one."""
        logger.warning("a log batch was refused (%s); writing it message by message", first)
        for parsed in batch:
            try:
                added = await self.store.write(parsed.rows)
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self._dead_letter(
                    parsed.message, f"invalid: {_reason(exc)}", len(parsed.rows), ack=False
                )
                parsed.rows = []
                continue
            metrics.RECORDS_WRITTEN.inc(added)


async def _ack(message: AbstractIncomingMessage) -> None:
    try:
        await ack(message)
    except Exception as exc:
        # The channel closed under us: the broker redelivers, and the write is idempotent.
        logger.warning("could not acknowledge a log message: %r", exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
    return f"{type(exc).__name__}: {exc}"[:500]
