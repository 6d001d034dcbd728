"""A bounded pool of FTP connections per carrier server, through aioftp."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aioftp

from .settings import FtpServer

logger = logging.getLogger(__name__)

# Failures after which a fresh connection is worth another try.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    EOFError,
    asyncio.IncompleteReadError,
    ConnectionError,
)


class MissingFile(Exception):
    """The server has no such file (FTP 550)."""


class FtpPool:
    """At most `max_connections` open connections to one server, reused between files."""

    def __init__(self, name: str, server: FtpServer) -> None:
        self.name = name
        self.server = server
        self._slots = asyncio.Semaphore(server.max_connections)
        self._idle: list[aioftp.Client] = []
        self.opened = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aioftp.Client]:
        """Borrow a logged-in connection; one that failed is closed, not returned."""
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            try:
                yield client
            except BaseException:
                client.close()
                raise
            self._idle.append(client)

    async def _connect(self) -> aioftp.Client:
        server = self.server
        client = aioftp.Client(
            socket_timeout=server.timeout, connection_timeout=server.timeout, encoding="utf-8"
        )
        try:
            await client.connect(server.host, server.port)
            await client.login(server.user, server.password.get_secret_value())
        except BaseException:
            client.close()
            raise
        self.opened += 1
        logger.debug("opened an FTP connection to the %s server", self.name)
        return client

    async def download(self, client: aioftp.Client, path: str) -> bytes:
        """Return the file's bytes; raise MissingFile when the server has none."""
        data = bytearray()
        try:
            async with client.download_stream(path) as stream:
                async for block in stream.iter_by_block():
                    data += block
        except aioftp.StatusCodeError as exc:
            if any(code.matches("550") for code in exc.received_codes):
                raise MissingFile(path) from None
            raise
        return bytes(data)

    async def close(self) -> None:
        """Close idle connections."""
        while self._idle:
            client = self._idle.pop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2.0)
            client.close()
