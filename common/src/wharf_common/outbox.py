"""Transactional outbox: messages written with the change that causes them, published after.

A handler calls `enqueue` in the transaction that commits its effect; an
`OutboxRelay` publishes committed rows to the bus and deletes them. A crash
between commit and publish loses nothing: the row stays until its publish is
confirmed. A crash between confirm and delete publishes the row again, so
delivery is at least once and consumers deduplicate by message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import asyncpg

from wharf_common.db import Connection, quote_schema
from wharf_common.envelope import Envelope

logger = logging.getLogger(__name__)

Publish = Callable[[str, str, Envelope], Awaitable[None]]
"""Publish (kind, destination, envelope) and return once the broker has confirmed it."""

_MAX_IDENTIFIER = 63
_KEEPALIVE = 30.0
_WATCH_INTERVAL = 0.5
_RECONNECT_DELAY = 1.0
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def channel(schema: str) -> str:
    """Return the NOTIFY channel the outbox of `schema` signals on."""
    quote_schema(schema)
    name = f"{schema}_outbox"
    if len(name) > _MAX_IDENTIFIER:
        raise ValueError(f"schema name {schema!r} is too long for an outbox channel")
    return name


async def enqueue(
    conn: Connection,
    schema: str,
    envelope: Envelope,
    *,
    kind: Literal["event", "command"],
    destination: str,
) -> None:
    """Queue `envelope` for publishing once the caller's transaction commits."""
    # One statement, one round trip: the row and the notification together.
    await conn.execute(
        f"WITH queued AS (INSERT INTO {quote_schema(schema)}.outbox (kind, destination, envelope)"
        " VALUES ($1, $2, $3::text::jsonb) RETURNING id) SELECT pg_notify($4, '')",
        kind,
        destination,
        envelope.encode().decode(),
        channel(schema),
    )


async def enqueue_many(
    conn: Connection,
    schema: str,
    envelopes: Sequence[Envelope],
    *,
    kind: Literal["event", "command"],
    destination: str,
) -> None:
    """Queue several envelopes, in order, in one statement with one notification."""
    if not envelopes:
        return
    await conn.execute(
        f"WITH queued AS (INSERT INTO {quote_schema(schema)}.outbox (kind, destination, envelope)"
        " SELECT $1, $2, e::jsonb FROM unnest($3::text[]) WITH ORDINALITY AS t(e, n)"
        " ORDER BY n RETURNING id) SELECT pg_notify($4, '')",
        kind,
        destination,
        [envelope.encode().decode() for envelope in envelopes],
        channel(schema),
    )


def backoff(attempts: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before the next try of a row that has failed `attempts` times."""
    return min(cap, base * 2.0 ** max(0, attempts - 1))


class OutboxRelay:
    """Publishes a schema's outbox rows in id order and deletes them once confirmed.

    It wakes on NOTIFY from `enqueue` (over one connection it holds from the
    pool, reopened if it drops) and also polls every `poll_interval` seconds in
    case a notification was missed. Rows are claimed with ``FOR UPDATE SKIP
    LOCKED``, so any number of relays, one per task, can share an outbox
    without publishing a row twice.

    A batch is handed to `publish` all at once, in id order, and its confirms
    are awaited together within `publish_timeout`. A failed publish stops
    the batch: the rows confirmed before it are deleted, the rows after it
    stay and go again in a later batch (a consumer may see them twice, never
    ahead of an earlier row that was confirmed), and the failed row's next
    attempt moves back exponentially (capped at `max_backoff`); later rows
    may then overtake it. No row is ever dropped.

    With ``ordered=False`` every confirmed row of a batch is deleted and only
    the failed ones are postponed, as above. Use it where consumers do not
    rely on the outbox order.
    """

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        schema: str,
        publish: Publish,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        publish_timeout: float = 30.0,
        max_backoff: float = 300.0,
        ordered: bool = True,
    ) -> None:
        self._pool = pool
        self._name = schema
        self._schema = quote_schema(schema)
        self._channel = channel(schema)
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        self._max_backoff = max_backoff
        self._ordered = ordered
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start relaying in background tasks."""
        if self._tasks:
            raise RuntimeError("relay already started")
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"outbox-relay:{self._channel}"),
            asyncio.create_task(self._listen(), name=f"outbox-listen:{self._channel}"),
        ]

    async def stop(self) -> None:
        """Finish the batch in flight, then stop listening and polling."""
        if not self._tasks:
            return
        self._stopping.set()
        self._wake.set()
        run, listen = self._tasks
        self._tasks = []
        listen.cancel()
        done, _ = await asyncio.wait({run}, timeout=self._publish_timeout + self._poll_interval)
        if not done:
            logger.warning("outbox relay for %s did not finish its batch in time", self._name)
            run.cancel()
        for task in (run, listen):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def pending(self) -> int:
        """Number of rows still waiting to be published."""
        count: int = await self._pool.fetchval(f"SELECT count(*) FROM {self._schema}.outbox")
        return count

    async def relay_once(self) -> int:
        """Publish every row that is due now; return how many went out."""
        total = 0
        while not self._stopping.is_set():
            sent, complete = await self._relay_batch()
            total += sent
            if not complete or sent < self._batch_size:
                break
        return total

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            healthy = True
            try:
                await self.relay_once()
            except _DB_ERRORS as error:
                healthy = False
                logger.warning(
                    "outbox relay for %s cannot reach the database: %r", self._name, error
                )
            except Exception:
                healthy = False
                logger.exception("outbox relay for %s failed", self._name)
            await self._pause(self._wake if healthy else self._stopping)

    async def _pause(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self._poll_interval)

    async def _relay_batch(self) -> tuple[int, bool]:
        """Publish one batch; return how many rows went out and whether none failed."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, kind, destination, envelope::text AS envelope, attempts"
                f" FROM {self._schema}.outbox WHERE next_attempt_at <= now()"
                " ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1",
                self._batch_size,
            )
            if self._ordered:
                published, failed = await self._publish_in_order(conn, rows)
            else:
                published, failed = await self._publish_together(conn, rows)
            if published:
                await conn.execute(
                    f"DELETE FROM {self._schema}.outbox WHERE id = ANY($1::bigint[])", published
                )
        return len(published), not failed

    async def _publish_in_order(
        self, conn: Connection, rows: list[asyncpg.Record]
    ) -> tuple[list[int], bool]:
        # Every row is handed to `publish` at once, in id order, and the
        # confirms are awaited together: tasks start in the order they were
        # created, so a publisher that queues its frames before its first
        # wait (as the bus does) puts them on the wire in row order. Rows
        # after a failed one stay in the outbox even if they went out, and
        # go again, behind it, in a later batch.
        outcomes = await self._publish_all(rows)
        published: list[int] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                await self._postpone(conn, row["id"], row["attempts"] + 1, outcome)
                return published, True
            published.append(row["id"])
        return published, False

    async def _publish_together(
        self, conn: Connection, rows: list[asyncpg.Record]
    ) -> tuple[list[int], bool]:
        outcomes = await self._publish_all(rows)
        published: list[int] = []
        failed = False
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed = True
                await self._postpone(conn, row["id"], row["attempts"] + 1, outcome)
                continue
            published.append(row["id"])
        return published, failed

    async def _publish_all(self, rows: list[asyncpg.Record]) -> list[BaseException | None]:
        """Publish every row concurrently within one timeout; return each row's error or None."""
        if not rows:
            return []
        tasks = [asyncio.ensure_future(self._publish_row(row)) for row in rows]
        try:
            async with asyncio.timeout(self._publish_timeout):
                await asyncio.wait(tasks)
        except TimeoutError:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        outcomes: list[BaseException | None] = []
        for task in tasks:
            if task.cancelled():
                outcomes.append(TimeoutError("publish not confirmed in time"))
            else:
                outcomes.append(task.exception())
        return outcomes

    async def _publish_row(self, row: asyncpg.Record) -> None:
        envelope = Envelope.model_validate_json(row["envelope"])
        await self._publish(row["kind"], row["destination"], envelope)

    async def _postpone(
        self, conn: Connection, row_id: int, attempts: int, error: BaseException
    ) -> None:
        delay = backoff(attempts, base=self._poll_interval, cap=self._max_backoff)
        await conn.execute(
            f"UPDATE {self._schema}.outbox SET attempts = $2,"
            " next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
            row_id,
            attempts,
            delay,
        )
        logger.warning(
            "outbox publish failed (attempt %d), retrying in %.1fs: %r",
            attempts,
            delay,
            error,
            extra={"outbox_id": row_id},
        )

    async def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(self._channel, self._notified)
                    try:
                        self._wake.set()
                        await self._watch(conn)
                    finally:
                        with contextlib.suppress(*_DB_ERRORS):
                            await conn.remove_listener(self._channel, self._notified)
            except _DB_ERRORS as error:
                logger.warning("outbox listener for %s lost its connection: %r", self._name, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _RECONNECT_DELAY)

    async def _watch(self, conn: Connection) -> None:
        """Return when the listening connection is gone; ping it now and then while quiet."""
        idle = 0.0
        while not conn.is_closed():
            await asyncio.sleep(_WATCH_INTERVAL)
            idle += _WATCH_INTERVAL
            if idle >= _KEEPALIVE:
                idle = 0.0
                await conn.execute("SELECT 1", timeout=_KEEPALIVE)

    def _notified(self, *_: object) -> None:
        self._wake.set()
