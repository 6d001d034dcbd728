from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from wharf_common import db
from wharf_common.bus import Bus
from wharf_common.logs import LOG_QUEUE
from wharf_common.testservers import PostgresServer
from wharf_log_sink import metrics
from wharf_log_sink.db import SCHEMA, RecordStore
from wharf_log_sink.sink import LogSink

from .conftest import MIGRATIONS, count, eventually, make_record, publish, queue_length

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.init()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def own_pool(postgres: PostgresServer) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(postgres.url(), max_size=2)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    yield pool
    await pool.close()


async def test_postgresql_restarted_mid_stream_loses_nothing(
    bus: Bus, postgres: PostgresServer, own_pool: asyncpg.Pool
) -> None:
    sink = LogSink(bus, RecordStore(own_pool), batch_records=200, batch_interval=0.05)
    sink.retry_max_delay = 0.5
    await sink.start()
    try:
        for _ in range(5):
            await publish(bus, [make_record() for _ in range(100)])
        await eventually(lambda: count(own_pool), 500)

        failures = metrics.WRITE_FAILURES._value.get()
        await asyncio.to_thread(postgres.stop)
        for _ in range(20):
            await publish(bus, [make_record() for _ in range(100)])
        async with asyncio.timeout(10):
            while metrics.WRITE_FAILURES._value.get() <= failures:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        # Nothing written, so nothing acknowledged: the records wait in the queue.
        assert await queue_length(bus, LOG_QUEUE) + sink.held == 20
        assert sink.held > 0

        await asyncio.to_thread(postgres.start)
        await eventually(lambda: count(own_pool), 2500, timeout=20)
        await eventually(lambda: queue_length(bus, LOG_QUEUE), 0)
    finally:
        await sink.stop()

    assert await own_pool.fetchval(f"SELECT count(DISTINCT id) FROM {SCHEMA}.records") == 2500
