"""Structured JSON logging, with a handler that ships records over the bus.

Correlation id, tenant and message id live in context variables, so every
record logged while a request or message is handled carries them as fields.
aiohttp's records of requests it could not parse are rewritten before any
handler sees them: their exception quotes the raw bytes, which may hold a
credential.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError
from prometheus_client import Counter
from pydantic_core import to_json

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)
message_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("message_id", default=None)

LOG_QUEUE = "wharf.log-sink.records"

RECORDS_DROPPED = Counter(
    "wharf_log_records_dropped_total", "Log records dropped because the bus buffer was full"
)

logger = logging.getLogger(__name__)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


@contextlib.contextmanager
def log_context(
    *, correlation: str | None = None, tenant_id: str | None = None, message: str | None = None
) -> Iterator[None]:
    """Attach correlation id, tenant and message id to every record logged inside."""
    tokens = [
        (correlation_id, correlation_id.set(correlation)),
        (tenant, tenant.set(tenant_id)),
        (message_id, message_id.set(message)),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def record_to_dict(record: logging.LogRecord, service: str) -> dict[str, Any]:
    """Turn a LogRecord into the flat dictionary that is printed and shipped."""
    data: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname,
        "service": service,
        "logger": record.name,
        "message": record.getMessage(),
        "correlation_id": getattr(record, "correlation_id", None) or correlation_id.get(),
        "tenant": getattr(record, "tenant", None) or tenant.get(),
        "message_id": getattr(record, "message_id", None) or message_id.get(),
    }
    fields = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and key not in data
    }
    if fields:
        data["fields"] = {key: _jsonable(value) for key, value in fields.items()}
    if record.exc_info and record.exc_info[0] is not None:
        data["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        # pydantic-core's serializer is several times faster than the json module,
        # and every request writes at least one line.
        return to_json(record_to_dict(record, self.service)).decode()


Publish = Callable[[list[dict[str, Any]]], Awaitable[None]]


class BusLogHandler(logging.Handler):
    """Buffers records in memory and lets an asyncio task ship them in batches.

    `emit` only appends to a bounded deque, so logging never waits on the
    broker. While the broker is away, records wait in the buffer; when it is
    full, new records are dropped from the bus (they still reach stderr) and
    counted, and the count is logged once shipping resumes.
    """

    def __init__(self, service: str, *, capacity: int = 10_000, batch_size: int = 500) -> None:
        super().__init__()
        self.service = service
        self.capacity = capacity
        self.batch_size = batch_size
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._dropped = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Records waiting to be shipped."""
        return len(self._buffer)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("aio_pika", "aiormq")) and record.levelno < logging.WARNING:
            return
        try:
            data = record_to_dict(record, self.service)
        except Exception:
            self.handleError(record)
            return
        if len(self._buffer) >= self.capacity:
            self._dropped += 1
            RECORDS_DROPPED.inc()
            return
        self._buffer.append(data)
        if self._wakeup is not None and len(self._buffer) >= self.batch_size:
            self._wakeup.set()

    def start(self, publish: Publish, *, interval: float = 0.2) -> None:
        """Start shipping buffered records through `publish` from the running loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(publish, interval), name="log-shipper")

    async def stop(self, publish: Publish, *, timeout: float = 5.0) -> None:
        """Ship what is left (within `timeout`) and stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(timeout):
                while self._buffer:
                    await self._ship_once(publish)

    async def _run(self, publish: Publish, interval: float) -> None:
        assert self._wakeup is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                while self._buffer:
                    await self._ship_once(publish)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The broker is away: records stay buffered until it returns.
                print(f"log shipping paused: {exc!r}", file=sys.stderr)
                await asyncio.sleep(1.0)

    async def _ship_once(self, publish: Publish) -> None:
        batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
        try:
            await publish(batch)
        except BaseException:
            self._buffer.extendleft(reversed(batch))
            raise
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            logger.warning("dropped %d log records while the bus buffer was full", dropped)


# The logger aiohttp's request handler reports unparsable requests on.
_AIOHTTP_SERVER_LOGGER = "aiohttp.server"


class MalformedRequestFilter(logging.Filter):
    """Turns aiohttp's report of a request it could not parse into a warning without its bytes.

    aiohttp logs such a request at ERROR with a traceback whose message quotes
    the offending bytes: the start of an over-long header line is a whole API
    key or token. The sender's mistake is worth a warning; its exception class
    and status say what happened without repeating what was sent.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = _parse_error(record.exc_info[1] if record.exc_info else None)
        if error is None:
            return True
        status = error.code if isinstance(error, HttpProcessingError) else 400
        record.msg = "refused a malformed HTTP request: %s (status %d)"
        record.args = (type(error).__name__, status)
        record.exc_info = record.exc_text = record.stack_info = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _parse_error(error: BaseException | None) -> BaseException | None:
    """The parse error in `error`'s chain, if any: aiohttp wraps body errors in another."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, HttpProcessingError | RequestPayloadError):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def quiet_malformed_requests() -> None:
    """Install `MalformedRequestFilter` on aiohttp's server logger, once per process."""
    server = logging.getLogger(_AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())


def configure_logging(
    service: str, level: str = "INFO", *, stream: TextIO | None = None
) -> logging.Handler:
    """Configure the root logger once, for a service's `__main__`: JSON lines to stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aio_pika", "aiormq", "aiobotocore", "botocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    quiet_malformed_requests()
    return handler
