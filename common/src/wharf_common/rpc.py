"""Request and reply over the bus, bounded by the request's absolute deadline.

Requests go to a non-durable, auto-deleted queue per service, so when no
task serves it the request is unroutable and the caller learns at once that
the service is unavailable. Answers come back on direct reply-to, keyed by
the request's message id. A request carries its remaining time as the
message expiration, so the broker drops it when it can no longer be
answered, and the server checks the deadline again before running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from prometheus_client import Histogram
from pydantic import ValidationError

from wharf_common import claimcheck, deadlines
from wharf_common.consumer import ack
from wharf_common.envelope import Envelope
from wharf_common.errors import (
    ClientError,
    DeadlineExceeded,
    ServiceUnavailable,
    Unprocessable,
    client_error_from,
)
from wharf_common.logs import log_context

if TYPE_CHECKING:
    from wharf_common.bus import Bus

logger = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"
DEFAULT_TIMEOUT = 10.0

RPC_SECONDS = Histogram("wharf_rpc_seconds", "RPC round trips, by queue and outcome", ["queue"])

RpcHandler = Callable[[Envelope], Awaitable[Any]]


class RpcClient:
    """Sends requests and matches replies to waiting callers."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[Envelope]] = {}

    async def start(self) -> None:
        """Open the channel that publishes requests and receives direct replies."""
        channel = await self.bus.connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        await self._listen()
        reopen = getattr(channel, "reopen_callbacks", None)
        if reopen is not None:
            reopen.add(self._on_reopen)

    async def _listen(self) -> None:
        assert self._channel is not None
        queue = await self._channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def _on_reopen(self, *_: Any) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ServiceUnavailable("connection to the bus was lost"))
        await self._listen()

    async def close(self) -> None:
        """Fail pending calls and close the channel."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ServiceUnavailable("the bus is closing"))
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def call(self, queue: str, envelope: Envelope, *, timeout: float | None = None) -> Any:
        """Send `envelope` to `queue` and return the reply's result.

        The deadline is the envelope's own, else `timeout` (default 10 s)
        from now. Raises DeadlineExceeded when it passes, ServiceUnavailable
        when nobody serves `queue`, and the ClientError the server raised.
        """
        if envelope.deadline is None:
            envelope.deadline = deadlines.deadline_in(timeout or DEFAULT_TIMEOUT)
        left = deadlines.remaining(envelope.deadline)
        if not left:
            raise DeadlineExceeded(f"no time left to call {queue}")

        key = str(envelope.id)
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        started = time.perf_counter()
        try:
            async with asyncio.timeout(left):
                await self.bus.publish_raw(
                    "",
                    queue,
                    envelope,
                    persistent=False,
                    expiration=left,
                    reply_to=REPLY_TO,
                    mandatory=True,
                    channel=self._channel,
                )
                reply = await claimcheck.check_out(await future, self.bus.store)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"{queue} did not answer within {left:.1f} s") from exc
        finally:
            self._waiting.pop(key, None)
            RPC_SECONDS.labels(queue).observe(time.perf_counter() - started)
        return _result(reply)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.get(message.correlation_id or "")
        if future is None or future.done():
            return
        try:
            future.set_result(Envelope.decode(message.body))
        except ValidationError as exc:
            future.set_exception(exc)


def _result(reply: Envelope) -> Any:
    body = reply.body or {}
    if body.get("ok"):
        return body.get("result")
    error = body.get("error") or {}
    status = int(error.get("status", 500))
    detail = str(error.get("detail", "the service failed"))
    if status == 504:
        raise DeadlineExceeded(detail)
    if status == 503:
        raise ServiceUnavailable(detail)
    if 400 <= status < 500:
        raise client_error_from(status, detail, error.get("extra"))
    raise RuntimeError(f"remote error: {detail}")


class RpcServer:
    """Serves requests from one queue with a handler that returns the result."""

    def __init__(self, bus: Bus, queue: str, handler: RpcHandler, *, prefetch: int = 64) -> None:
        self.bus = bus
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Declare the request queue and start serving."""
        # Replies go out unconfirmed: a confirm could not bring a lost reply
        # back, and the caller's deadline already covers one that never comes.
        self._channel = await self.bus.channel(prefetch=self.prefetch, confirms=False)
        self._queue = await self._channel.declare_queue(self.queue, durable=False, auto_delete=True)
        self._tag = await self._queue.consume(self._on_request)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests and let those in flight answer."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
            self._tag = None
        if self._in_flight and timeout > 0:
            await asyncio.wait(self._in_flight, timeout=timeout)
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self._answer(message)
        finally:
            self._in_flight.discard(task)
            with contextlib.suppress(Exception):
                await ack(message)

    async def _answer(self, message: AbstractIncomingMessage) -> None:
        if not message.reply_to:
            logger.warning("dropped an RPC request on %s without reply_to", self.queue)
            return
        try:
            request = Envelope.decode(message.body)
        except (ValidationError, RecursionError):
            logger.warning("refused an RPC request on %s that is not an envelope", self.queue)
            await self._refuse(message, message.reply_to)
            return
        with log_context(
            correlation=request.correlation_id, tenant_id=request.tenant, message=str(request.id)
        ):
            if deadlines.expired(request.deadline):
                logger.warning("skipped %s on %s: deadline passed", request.type, self.queue)
                return
            started = time.perf_counter()
            try:
                request = await claimcheck.check_out(request, self.bus.store)
            except Exception as exc:
                body = _error(400, "Bad Request", f"the request body cannot be read: {exc}")
            else:
                body = await self._run(request)
            reply = request.child(f"{request.type}.reply", body)
            await self.bus.publish_raw(
                "",
                message.reply_to,
                reply,
                persistent=False,
                expiration=deadlines.remaining(request.deadline),
                reply_for=str(request.id),
                channel=self._channel,
            )
            logger.info(
                "answered %s in %.1f ms",
                request.type,
                (time.perf_counter() - started) * 1000,
                extra={"ok": body["ok"]},
            )

    async def _refuse(self, message: AbstractIncomingMessage, reply_to: str) -> None:
        reply = Envelope(
            type="rpc.reply",
            correlation_id=message.correlation_id or "",
            body=_error(400, "Bad Request", "the request cannot be read"),
        )
        await self.bus.publish_raw(
            "",
            reply_to,
            reply,
            persistent=False,
            expiration=60,
            reply_for=message.message_id,
            channel=self._channel,
        )

    async def _run(self, request: Envelope) -> dict[str, Any]:
        try:
            async with asyncio.timeout(deadlines.remaining(request.deadline)):
                result = await self.handler(request)
        except TimeoutError:
            return _error(504, "Gateway Timeout", f"{request.type} ran out of time")
        except ClientError as exc:
            return {"ok": False, "error": {**exc.to_problem(), "extra": exc.extra}}
        except ValidationError as exc:
            # The same shape as the gateway's own 422s, without echoing the input.
            errors = [
                {"field": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
                for err in exc.errors(include_url=False)
            ]
            fields = ", ".join(error["field"] or "body" for error in errors)
            problem = Unprocessable(f"invalid fields: {fields}", extra={"errors": errors})
            return {"ok": False, "error": {**problem.to_problem(), "extra": problem.extra}}
        except (asyncpg.DataError, RecursionError) as exc:
            # The same request would fail again: it holds a value PostgreSQL
            # cannot store, or is nested too deep.
            logger.warning("%s refused: %s", request.type, type(exc).__name__)
            return _error(
                422, "Unprocessable Content", "the request holds a value that cannot be stored"
            )
        except DeadlineExceeded as exc:
            return _error(504, "Gateway Timeout", str(exc))
        except ServiceUnavailable as exc:
            return _error(503, "Service Unavailable", str(exc))
        except Exception:
            logger.exception("%s failed on %s", request.type, self.queue)
            return _error(500, "Internal Server Error", f"{request.type} failed")
        return {"ok": True, "result": result}


def _error(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"ok": False, "error": {"status": status, "title": title, "detail": detail}}


async def serve(bus: Bus, queue: str, handler: RpcHandler, **options: Any) -> RpcServer:
    """Start an RpcServer on `queue`."""
    server = RpcServer(bus, queue, handler, **options)
    await server.start()
    return server
