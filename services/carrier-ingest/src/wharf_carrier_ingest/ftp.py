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


class TooLarge(Exception):
    """The file holds more bytes than a download may take."""


class FtpPool:
    """At most `max_connections` open connections to one server, reused between files."""

    def __init__(self, name: str, server: FtpServer) -> None:
        self.name = name
        self.server = server
        self._slots = asyncio.Semaphore(server.max_connections)
        self._idle: list[aioftp.Client] = []
        # Connections left mid-transfer: their control channel still owes a reply.
        self._spoiled: set[aioftp.Client] = set()
        self.opened = 0

    @property
    def address(self) -> str:
        """The server's host and port, as error messages name it."""
        return f"{self.server.host}:{self.server.port}"

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aioftp.Client]:
        """Borrow a logged-in connection; one that failed is closed, not returned."""
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            try:
                yield client
            except BaseException:
                client.close()
                self._spoiled.discard(client)
                raise
            if client in self._spoiled:
                self._spoiled.discard(client)
                client.close()
            else:
                self._idle.append(client)

    async def _connect(self) -> aioftp.Client:
        server = self.server
        client = aioftp.Client(
            socket_timeout=server.timeout, connection_timeout=server.timeout, encoding="utf-8"
        )
        try:
            await client.connect(server.host, server.port)
            await client.login(server.user, server.password.get_secret_value())
            # Binary mode from the start, so SIZE counts the bytes RETR sends.
            await client.command("TYPE I", "200")
        except BaseException:
            client.close()
            raise
        self.opened += 1
        logger.debug("opened an FTP connection to the %s server", self.name)
        return client

    async def download(self, client: aioftp.Client, path: str, limit: int) -> bytearray:
        """Return the file's bytes; raise MissingFile or TooLarge past `limit` bytes.

        The size the server reports is checked first; reading stops past the
        limit either way, for a server that does not report it or reports it
        wrong.
        """
        size = await _size(client, path)
        if size is not None and size > limit:
            raise TooLarge(path)
        data = bytearray()
        try:
            async with client.download_stream(path) as stream:
                async for block in stream.iter_by_block():
                    data += block
                    if len(data) > limit:
                        self._spoiled.add(client)
                        raise TooLarge(path)
        except aioftp.StatusCodeError as exc:
            if any(code.matches("550") for code in exc.received_codes):
                raise MissingFile(path) from None
            raise
        return data

    async def close(self) -> None:
        """Close idle connections."""
        while self._idle:
            client = self._idle.pop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2.0)
            client.close()


async def _size(client: aioftp.Client, path: str) -> int | None:
    """The file's size by SIZE (RFC 3659), or None when the server does not tell."""
    try:
        _, info = await client.command(f"SIZE {path}", "213")
    except aioftp.StatusCodeError:
        # Not supported, or no such file: RETR answers the latter for certain.
        return None
    try:
        return int(info[0].strip())
    except (IndexError, ValueError):
        return None
