"""Forwarding committed records to CloudWatch Logs, at least once.

The sink notes each new record in ``forward_pending`` in the same
transaction that stores it. The forwarder takes the oldest pending records
(``FOR UPDATE SKIP LOCKED``, so several tasks can forward, each to its own
stream), sends one PutLogEvents batch, and deletes exactly the keys it sent
in that transaction. A crash before the commit sends them again.

Batches honour the API's limits: at most 10,000 events, at most 1,048,576
bytes counting 26 bytes per event, a span of less than 24 hours, in
chronological order. Throttling and server errors are retried with
exponential back-off and lose nothing. A call that timed out may have been
accepted, so its retry can duplicate: those events are counted in
``wharf_log_sink_forward_duplicates_total``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aioboto3
import asyncpg
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from wharf_common.db import quote_schema
from wharf_log_sink import metrics
from wharf_log_sink.db import SCHEMA, level_name

if TYPE_CHECKING:
    from wharf_log_sink.settings import LogSinkSettings

logger = logging.getLogger(__name__)

MAX_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_SPAN_MS = 24 * 3600 * 1000
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclass(frozen=True)
class Event:
    """One log event as CloudWatch takes it, with the key of the row it came from."""

    timestamp: int
    message: str
    key: tuple[datetime, Any]

    @property
    def size(self) -> int:
        """Bytes this event counts against a batch's limit."""
        return len(self.message.encode()) + EVENT_OVERHEAD


def plan_batches(events: Sequence[Event]) -> list[list[Event]]:
    """Sort `events` chronologically and cut them into batches within the API's limits."""
    batches: list[list[Event]] = []
    current: list[Event] = []
    size = 0
    for event in sorted(events, key=lambda e: (e.timestamp, e.key)):
        if current and (
            len(current) >= MAX_EVENTS
            or size + event.size > MAX_BATCH_BYTES
            or event.timestamp - current[0].timestamp >= MAX_SPAN_MS
        ):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event.size
    if current:
        batches.append(current)
    return batches


def to_event(row: asyncpg.Record) -> Event:
    """The CloudWatch event for a stored record: its JSON, the message cut to fit."""
    data = {
        "id": row["id"].hex,
        "level": level_name(row["level"]),
        "service": row["service"],
        "logger": row["logger"],
        "message": row["message"],
        "correlation_id": row["correlation_id"],
        "tenant": row["tenant"],
        "message_id": row["message_id"],
    }
    if row["fields"]:
        data["fields"] = json.loads(row["fields"])
    if row["exception"]:
        data["exception"] = row["exception"]
    text = json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False)
    if len(text.encode()) > MAX_EVENT_BYTES:
        text = text.encode()[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
    timestamp = int(row["ts"].timestamp() * 1000)
    return Event(timestamp=timestamp, message=text, key=(row["ts"], row["id"]))


def _code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None


def _maybe_delivered(exc: BaseException) -> bool:
    """True when the request may have reached CloudWatch before it failed."""
    return isinstance(exc, ReadTimeoutError | TimeoutError)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError | ReadTimeoutError):
        return True
    if isinstance(exc, TimeoutError):
        return True
    return _code(exc) in RETRYABLE_CODES or _code(exc) == "ResourceNotFoundException"


class Forwarder:
    """Sends committed log records to one CloudWatch Logs stream."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client_factory: Any,
        *,
        group: str,
        stream: str,
        schema: str = SCHEMA,
        fetch: int = MAX_EVENTS,
        call_timeout: float = 30.0,
        give_up_after: float = 300.0,
        backoff: float = 0.2,
    ) -> None:
        self.pool = pool
        self.client_factory = client_factory
        self.group = group
        self.stream = stream
        self.fetch = fetch
        self.call_timeout = call_timeout
        self.give_up_after = give_up_after
        self.backoff = backoff
        quoted = quote_schema(schema)
        self._select = (
            "SELECT p.ts, p.id, r.level, r.service, r.logger, r.message, r.correlation_id,"
            " r.tenant, r.message_id, r.fields, r.exception"
            f" FROM {quoted}.forward_pending p"
            f" JOIN {quoted}.records r ON r.ts = p.ts AND r.id = p.id"
            " ORDER BY p.ts, p.id LIMIT $1 FOR UPDATE OF p SKIP LOCKED"
        )
        self._delete = (
            f"DELETE FROM {quoted}.forward_pending"
            " WHERE (ts, id) IN (SELECT * FROM unnest($1::timestamptz[], $2::uuid[]))"
        )

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: LogSinkSettings) -> Forwarder:
        """A forwarder configured by the sink's settings."""
        session = aioboto3.Session()
        config = Config(
            connect_timeout=5,
            read_timeout=settings.cloudwatch_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        )

        def client() -> Any:
            return session.client(
                "logs",
                region_name=settings.cloudwatch_region,
                endpoint_url=settings.cloudwatch_endpoint_url,
                config=config,
            )

        stream = settings.cloudwatch_log_stream or (
            f"log-sink-{socket.gethostname()}-{os.getpid()}"
        )
        return cls(
            pool,
            client,
            group=settings.cloudwatch_log_group,
            stream=stream,
            call_timeout=settings.cloudwatch_timeout,
        )

    async def run(self, *, interval: float = 1.0) -> None:
        """Forward pending records until cancelled, polling every `interval` when idle."""
        async with self.client_factory() as client:
            await self.ensure_stream(client)
            while True:
                sent = await self.forward_once(client)
                if not sent:
                    await asyncio.sleep(interval)

    async def ensure_stream(self, client: Any) -> None:
        """Create the log group and stream unless they exist."""
        for call, args in (
            (client.create_log_group, {"logGroupName": self.group}),
            (client.create_log_stream, {"logGroupName": self.group, "logStreamName": self.stream}),
        ):
            try:
                await call(**args)
            except ClientError as exc:
                if _code(exc) != "ResourceAlreadyExistsException":
                    raise

    async def forward_once(self, client: Any) -> int:
        """Send the oldest pending records as one batch; return how many were sent."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self._select, self.fetch)
            if not rows:
                return 0
            batch = plan_batches([to_event(row) for row in rows])[0]
            await self._put(client, batch)
            await conn.execute(self._delete, [e.key[0] for e in batch], [e.key[1] for e in batch])
        metrics.FORWARDED.inc(len(batch))
        return len(batch)

    async def _put(self, client: Any, batch: list[Event]) -> None:
        events = [{"timestamp": e.timestamp, "message": e.message} for e in batch]

        async def before_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None:
                return
            code = _code(exc) or type(exc).__name__
            metrics.FORWARD_RETRIES.labels(code).inc()
            if _maybe_delivered(exc):
                metrics.FORWARD_DUPLICATES.inc(len(batch))
            if code == "ResourceNotFoundException":
                await self.ensure_stream(client)
            logger.warning("PutLogEvents failed (%s); retrying", code)

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential_jitter(multiplier=self.backoff, max=20.0, jitter=self.backoff),
            stop=stop_after_delay(self.give_up_after),
            before_sleep=before_retry,
            reraise=True,
        ):
            with attempt:
                async with asyncio.timeout(self.call_timeout + 5):
                    response = await client.put_log_events(
                        logGroupName=self.group, logStreamName=self.stream, logEvents=events
                    )
        _count_rejected(response, len(batch))


def _count_rejected(response: dict[str, Any], total: int) -> None:
    info = response.get("rejectedLogEventsInfo") or {}
    rejected = {
        "too_new": total - info["tooNewLogEventStartIndex"]
        if "tooNewLogEventStartIndex" in info
        else 0,
        "too_old": info["tooOldLogEventEndIndex"] + 1 if "tooOldLogEventEndIndex" in info else 0,
        "expired": info["expiredLogEventEndIndex"] + 1 if "expiredLogEventEndIndex" in info else 0,
    }
    for reason, number in rejected.items():
        if number:
            metrics.FORWARD_REJECTED.labels(reason).inc(number)
            logger.warning("CloudWatch refused %d log events as %s", number, reason)
