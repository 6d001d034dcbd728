from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from wharf_common.db import create_pool, migrate
from wharf_common.envelope import Envelope
from wharf_common.outbox import (
    OutboxRelay,
    Publish,
    backoff,
    channel,
    enqueue,
    enqueue_many,
)

SCHEMA = "shipping"


@pytest_asyncio.fixture
async def pool(database_url: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    opened = await create_pool(database_url, max_size=5)
    await migrate(opened, SCHEMA, tmp_path)
    yield opened
    await asyncio.wait_for(opened.close(), 10)


class Collector:
    """A publish callable that records what it was given, optionally failing first."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.published: list[tuple[str, str, Envelope]] = []
        self.calls = 0
        self._fail_first = fail_first
        self._delay = delay
        self._changed = asyncio.Condition()

    async def __call__(self, kind: str, destination: str, envelope: Envelope) -> None:
        self.calls += 1
        call = self.calls
        if self._delay:
            await asyncio.sleep(self._delay)
        try:
            if call <= self._fail_first:
                raise ConnectionError("broker away")
            self.published.append((kind, destination, envelope))
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(self, condition: Callable[[], bool], seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(condition)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [envelope.id for _, _, envelope in self.published]


async def _enqueue_many(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    ids = []
    async with pool.acquire() as conn:
        for start in range(0, count, 50):
            async with conn.transaction():
                for n in range(start, min(count, start + 50)):
                    envelope = Envelope(type="shipment.created", tenant="t1", body={"n": n})
                    await enqueue(conn, SCHEMA, envelope, kind="event", destination="shipments")
                    ids.append(envelope.id)
    return ids


async def test_relay_publishes_each_row_once_in_order(pool: asyncpg.Pool) -> None:
    collector = Collector()
    ids = await _enqueue_many(pool, 250)
    relay = OutboxRelay(pool, SCHEMA, collector, batch_size=100, poll_interval=0.1)

    relay.start()
    try:
        await collector.wait_until(lambda: len(collector.published) >= 250)
        await asyncio.sleep(0.3)
    finally:
        await relay.stop()

    assert collector.ids == ids
    kind, destination, envelope = collector.published[0]
    assert (kind, destination) == ("event", "shipments")
    assert (envelope.tenant, envelope.body) == ("t1", {"n": 0})
    assert await relay.pending() == 0


async def test_rolled_back_enqueue_is_never_published(pool: asyncpg.Pool) -> None:
    collector = Collector()
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=0.05)

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, SCHEMA, Envelope(type="x"), kind="command", destination="q")
                raise RuntimeError("effect failed")
    relay.start()
    await asyncio.sleep(0.3)
    await relay.stop()

    assert collector.published == []
    assert await relay.pending() == 0


async def test_notify_wakes_the_relay_before_the_poll(pool: asyncpg.Pool) -> None:
    collector = Collector()
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=60)
    relay.start()
    try:
        await asyncio.sleep(0.3)
        ids = await _enqueue_many(pool, 3)
        await collector.wait_until(lambda: len(collector.published) == 3, seconds=5)
    finally:
        await relay.stop()

    assert collector.ids == ids


async def test_failed_publish_keeps_the_row_for_a_later_attempt(pool: asyncpg.Pool) -> None:
    collector = Collector(fail_first=2)
    ids = await _enqueue_many(pool, 1)
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=0.05)

    sent = await relay.relay_once()
    left = await pool.fetchrow(
        f"SELECT attempts, next_attempt_at > now() AS later FROM {SCHEMA}.outbox"
    )
    relay.start()
    try:
        await collector.wait_until(lambda: len(collector.published) == 1)
    finally:
        await relay.stop()

    assert sent == 0
    assert left is not None and left["attempts"] == 1 and left["later"]
    assert collector.calls == 3
    assert collector.ids == ids
    assert await relay.pending() == 0


async def test_failed_publish_is_recorded_with_backoff(pool: asyncpg.Pool) -> None:
    collector = Collector(fail_first=1)
    await _enqueue_many(pool, 2)
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=10, max_backoff=60)

    sent = await relay.relay_once()
    rows = await pool.fetch(
        f"SELECT attempts, extract(epoch FROM next_attempt_at - now()) AS wait"
        f" FROM {SCHEMA}.outbox ORDER BY id"
    )
    sent_later = await relay.relay_once()

    assert sent == 0
    assert [r["attempts"] for r in rows] == [1, 0]
    assert 8 < rows[0]["wait"] <= 10
    assert sent_later == 1
    assert await relay.pending() == 1


def test_channel_is_named_after_the_schema() -> None:
    assert channel("shipping") == "shipping_outbox"
    with pytest.raises(ValueError):
        channel("s" * 60)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, base=1, cap=10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_two_relays_do_not_publish_a_row_twice(database_url: str, pool: asyncpg.Pool) -> None:
    collector = Collector(delay=0.002)
    by_relay: list[list[uuid.UUID]] = [[], []]

    def publisher(index: int) -> Publish:
        async def publish(kind: str, destination: str, envelope: Envelope) -> None:
            await collector(kind, destination, envelope)
            by_relay[index].append(envelope.id)

        return publish

    other_pool = await create_pool(database_url, max_size=3)
    relays = [
        OutboxRelay(p, SCHEMA, publisher(i), batch_size=20, poll_interval=0.05)
        for i, p in enumerate((pool, other_pool))
    ]
    for relay in relays:
        relay.start()
    try:
        ids = await _enqueue_many(pool, 300)
        await collector.wait_until(lambda: len(collector.published) >= 300, seconds=30)
        await asyncio.sleep(0.3)
    finally:
        for relay in relays:
            await relay.stop()
        await other_pool.close()

    first, second = by_relay
    assert first and second
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(ids)
    assert len(collector.ids) == 300


async def test_listener_reconnects_after_its_connection_drops(pool: asyncpg.Pool) -> None:
    collector = Collector()
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=60)
    relay.start()
    try:
        await asyncio.sleep(0.3)
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        await asyncio.sleep(1.5)
        ids = await _enqueue_many(pool, 2)
        await collector.wait_until(lambda: len(collector.published) == 2, seconds=5)
    finally:
        await relay.stop()

    assert killed == 1
    assert collector.ids == ids


async def test_enqueue_many_keeps_order_and_wakes_the_relay(pool: asyncpg.Pool) -> None:
    collector = Collector()
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=60)
    envelopes = [Envelope(type="shipment.created", body={"n": n}) for n in range(5)]
    relay.start()
    try:
        await asyncio.sleep(0.3)
        async with pool.acquire() as conn, conn.transaction():
            await enqueue_many(conn, SCHEMA, envelopes, kind="event", destination="shipments")
            await enqueue_many(conn, SCHEMA, [], kind="event", destination="shipments")
        await collector.wait_until(lambda: len(collector.published) == 5, seconds=5)
    finally:
        await relay.stop()

    assert collector.ids == [envelope.id for envelope in envelopes]
    assert collector.published[0][2].body == {"n": 0}


async def test_unordered_relay_publishes_every_row_once(pool: asyncpg.Pool) -> None:
    collector = Collector(delay=0.01)
    ids = await _enqueue_many(pool, 250)
    relay = OutboxRelay(pool, SCHEMA, collector, batch_size=100, ordered=False)

    started = asyncio.get_running_loop().time()
    sent = await relay.relay_once()
    elapsed = asyncio.get_running_loop().time() - started

    assert sent == 250
    assert sorted(collector.ids) == sorted(ids)
    assert elapsed < 250 * 0.01
    assert await relay.pending() == 0


async def test_unordered_relay_postpones_only_the_failed_rows(pool: asyncpg.Pool) -> None:
    collector = Collector(fail_first=2)
    ids = await _enqueue_many(pool, 5)
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=10, ordered=False)

    sent = await relay.relay_once()
    rows = await pool.fetch(
        f"SELECT attempts, next_attempt_at > now() AS later FROM {SCHEMA}.outbox ORDER BY id"
    )

    assert sent == 3
    assert [(r["attempts"], r["later"]) for r in rows] == [(1, True), (1, True)]
    assert set(collector.ids) == set(ids[2:])


async def test_ordered_relay_awaits_a_batch_of_confirms_together(pool: asyncpg.Pool) -> None:
    collector = Collector(delay=0.01)
    ids = await _enqueue_many(pool, 200)
    relay = OutboxRelay(pool, SCHEMA, collector, batch_size=100)

    started = asyncio.get_running_loop().time()
    sent = await relay.relay_once()
    elapsed = asyncio.get_running_loop().time() - started

    assert sent == 200
    assert collector.ids == ids
    assert elapsed < 200 * 0.01
    assert await relay.pending() == 0


async def test_ordered_relay_keeps_the_rows_after_a_failed_one(pool: asyncpg.Pool) -> None:
    collector = Collector(fail_first=2)
    ids = await _enqueue_many(pool, 5)
    relay = OutboxRelay(pool, SCHEMA, collector, poll_interval=10)

    sent = await relay.relay_once()
    rows = await pool.fetch(f"SELECT attempts FROM {SCHEMA}.outbox ORDER BY id")

    assert sent == 0
    assert [r["attempts"] for r in rows] == [1, 0, 0, 0, 0]
    assert collector.ids == ids[2:]
