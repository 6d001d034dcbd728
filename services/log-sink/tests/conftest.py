from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import asyncpg
import pytest

from wharf_common import db
from wharf_common.bus import LOGS_EXCHANGE, Bus
from wharf_common.envelope import Envelope
from wharf_log_sink.db import SCHEMA, RecordStore

MIGRATIONS = files("wharf_log_sink") / "migrations"


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    yield bus
    await bus.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> RecordStore:
    return RecordStore(pool)


def make_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "ts": datetime.now(UTC).isoformat(),
        "level": "INFO",
        "service": "gateway",
        "logger": "wharf_common.http",
        "message": "GET /v1/shipments -> 200 in 3.1 ms",
        "correlation_id": uuid.uuid4().hex,
        "tenant": "tenant-a",
        "message_id": None,
    }
    record.update(overrides)
    return record


async def publish(bus: Bus, records: list[dict[str, Any]], service: str = "gateway") -> None:
    await bus.publish_raw(LOGS_EXCHANGE, service, Envelope(type="log.records", body=records))


async def count(pool: asyncpg.Pool) -> int:
    value: int = await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.records")
    return value


async def eventually(
    read: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 15.0
) -> None:
    """Wait until `read()` returns `expected`; fail with the last value seen."""
    value: Any = None
    try:
        async with asyncio.timeout(timeout):
            while (value := await read()) != expected:
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"expected {expected!r}, still {value!r} after {timeout} s")


async def queue_length(bus: Bus, queue: str) -> int:
    channel = await bus.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()
