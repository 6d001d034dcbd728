"""Stand-in for wharf_common.outbox until it lands on main; same calls, polling only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import asyncpg

from wharf_common.db import Connection, quote_schema
from wharf_common.envelope import Envelope

logger = logging.getLogger(__name__)

Publish = Callable[[str, str, Envelope], Awaitable[None]]


async def enqueue(
    conn: Connection,
    schema: str,
    envelope: Envelope,
    *,
    kind: Literal["event", "command"],
    destination: str,
) -> None:
    """Queue `envelope` for publishing once the caller's transaction commits."""
    await conn.execute(
        f"INSERT INTO {quote_schema(schema)}.outbox (kind, destination, envelope)"
        " VALUES ($1, $2, $3::text::jsonb)",
        kind,
        destination,
        envelope.encode().decode(),
    )


class OutboxRelay:
    """Publishes committed outbox rows in id order and deletes them once confirmed."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        schema: str,
        publish: Publish,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._schema = quote_schema(schema)
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start relaying in a background task."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop relaying."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def relay_once(self) -> int:
        """Publish every row that is due now; return how many went out."""
        total = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    f"SELECT id, kind, destination, envelope::text AS envelope"
                    f" FROM {self._schema}.outbox WHERE next_attempt_at <= now()"
                    " ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1",
                    self._batch_size,
                )
                for row in rows:
                    envelope = Envelope.model_validate_json(row["envelope"])
                    await self._publish(row["kind"], row["destination"], envelope)
                if rows:
                    await conn.execute(
                        f"DELETE FROM {self._schema}.outbox WHERE id = ANY($1::bigint[])",
                        [row["id"] for row in rows],
                    )
            total += len(rows)
            if len(rows) < self._batch_size:
                return total

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.relay_once()
            except Exception:
                logger.exception("outbox relay failed")
                sent = 0
            if not sent:
                await asyncio.sleep(self._poll_interval)
