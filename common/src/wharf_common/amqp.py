"""The TCP transport under the bus's AMQP connections: one write per event-loop turn.

aiormq hands the socket one frame at a time (a publish, an ack), and asyncio
sends each at once when nothing is queued, so a busy service makes a system
call, and on loopback wakes the broker, for every frame. `CorkedWriter`
gathers what is written during one turn of the event loop and sends it in
one call at the end of the turn; `drain` and `close` send what is gathered
first, so nothing waits longer than the current turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL


class CorkedWriter(asyncio.StreamWriter):
    """A stream writer that sends everything written in one loop turn together."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._gathered: list[bytes] = []
        self._loop_ = loop

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._gathered:
            self._loop_.call_soon(self.flush)
        self._gathered.append(bytes(data))

    def flush(self) -> None:
        """Send what has been gathered (a no-op once the transport is closing)."""
        if not self._gathered:
            return
        data = b"".join(self._gathered)
        self._gathered.clear()
        if not self.transport.is_closing():
            super().write(data)

    async def drain(self) -> None:
        self.flush()
        await super().drain()

    def close(self) -> None:
        self.flush()
        super().close()


class CorkedTCPTransportFactory(TransportFactory):
    """Plain TCP, as aiormq's own factory, with a `CorkedWriter`."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kwargs.pop("ssl_context_provider", None)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, host=url.host or "localhost", port=url.port or 5672, **kwargs
            )
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        return reader, CorkedWriter(transport, protocol, reader, loop)


class CorkedConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection over `CorkedTCPTransportFactory` (plain amqp:// only).

    aio-pika passes on only the connection options it knows, so the factory
    is added after its own parsing; TLS connections keep aiormq's factory.
    """

    def __init__(self, url: URL, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if self.url.scheme == "amqp":
            factory: TransportFactory = CorkedTCPTransportFactory()
            self.kwargs["transport_factory"] = factory
