from __future__ import annotations

import asyncio
import json
import secrets

import aio_pika
import asyncpg
import pytest

from wharf_common.bus import LOGS_EXCHANGE, Bus, dead_letter_queue
from wharf_common.consumer import REASON_HEADER
from wharf_common.envelope import Envelope
from wharf_common.logs import LOG_QUEUE
from wharf_log_sink import sink as sink_module
from wharf_log_sink.db import SCHEMA, RecordStore
from wharf_log_sink.sink import LogSink

from .conftest import count, eventually, make_record, publish, queue_length

DEAD = dead_letter_queue(LOG_QUEUE)


async def test_records_are_written_in_batches_and_acknowledged(
    bus: Bus, pool: asyncpg.Pool, store: RecordStore
) -> None:
    sink = LogSink(bus, store, batch_records=500, batch_interval=5.0)
    await sink.start()
    try:
        for _ in range(10):
            await publish(bus, [make_record() for _ in range(100)])

        await eventually(lambda: count(pool), 1000, timeout=4)
        assert sink.batches == 2
        await eventually(lambda: queue_length(bus, LOG_QUEUE), 0)
    finally:
        await sink.stop()


async def test_small_batch_is_written_after_the_interval(
    bus: Bus, pool: asyncpg.Pool, store: RecordStore
) -> None:
    sink = LogSink(bus, store, batch_records=10_000, batch_interval=0.1)
    await sink.start()
    try:
        await publish(bus, [make_record(message="lonely", level="WARNING")])
        await eventually(lambda: count(pool), 1, timeout=3)
    finally:
        await sink.stop()

    row = await pool.fetchrow(f"SELECT * FROM {SCHEMA}.records")
    assert row["message"] == "lonely"
    assert row["level"] == 30


async def test_crash_before_ack_loses_nothing_and_writes_nothing_twice(
    amqp_url: str, bus: Bus, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [make_record(message=f"r{i}") for i in range(300)]
    reached_ack = asyncio.Event()

    async def die_at_ack(message: object) -> None:
        reached_ack.set()
        await asyncio.Event().wait()

    # The first sink commits the batch and dies before acknowledging it.
    monkeypatch.setattr(sink_module, "_ack", die_at_ack)
    crashing = Bus(amqp_url, service="crashing-sink")
    await crashing.connect()
    first = LogSink(crashing, RecordStore(pool), batch_records=300, batch_interval=5.0)
    await first.start()
    await publish(bus, records[:150])
    await publish(bus, records[150:])
    await asyncio.wait_for(reached_ack.wait(), 10)
    assert await count(pool) == 300
    await crashing.connection.close()
    monkeypatch.undo()

    second = LogSink(bus, RecordStore(pool), batch_records=300, batch_interval=0.1)
    await second.start()
    try:
        await publish(bus, [make_record(message="after")])
        await eventually(lambda: count(pool), 301)
        await eventually(lambda: queue_length(bus, LOG_QUEUE), 0)
    finally:
        await second.stop()

    assert await pool.fetchval(f"SELECT count(DISTINCT id) FROM {SCHEMA}.records") == 301


async def test_unparseable_records_go_to_the_dead_letter_queue_with_reason(
    bus: Bus, pool: asyncpg.Pool, store: RecordStore
) -> None:
    sink = LogSink(bus, store, batch_records=100, batch_interval=0.05)
    await sink.start()
    try:
        await publish(bus, [make_record(message="good"), {"id": "not-a-uuid", "ts": "yesterday"}])
        await bus.publish_raw(LOGS_EXCHANGE, "x", Envelope(type="log.records", body={"a": 1}))
        await bus.publish_message(LOGS_EXCHANGE, "x", aio_pika.Message(body=b"not json"))
        await eventually(lambda: queue_length(bus, DEAD), 3)
        await eventually(lambda: count(pool), 1)
        await eventually(lambda: queue_length(bus, LOG_QUEUE), 0)
    finally:
        await sink.stop()

    channel = await bus.channel()
    dead = await channel.declare_queue(DEAD, passive=True)
    reasons = []
    for _ in range(3):
        message = await dead.get(no_ack=True)
        reasons.append(str((message.headers or {})[REASON_HEADER]))
    await channel.close()
    assert any("record 1" in reason for reason in reasons)
    assert any("not a list" in reason for reason in reasons)
    assert all(reason.startswith("invalid") for reason in reasons)


async def test_a_message_postgresql_refuses_is_dead_lettered_alone(
    bus: Bus, pool: asyncpg.Pool, store: RecordStore
) -> None:
    sink = LogSink(bus, store, batch_records=4, batch_interval=0.5)
    await sink.start()
    try:
        await publish(bus, [make_record(message="first")])
        # Too large for a btree index entry: PostgreSQL refuses the row.
        await publish(bus, [make_record(correlation_id=secrets.token_hex(6000))])
        await publish(bus, [make_record(message="third")])
        # Passes the sink's cheap check, refused by asyncpg's encoder.
        await publish(bus, [make_record(id="+" + "a" * 31)])
        await eventually(lambda: count(pool), 2)
        await eventually(lambda: queue_length(bus, DEAD), 2)
        await eventually(lambda: queue_length(bus, LOG_QUEUE), 0)
    finally:
        await sink.stop()


async def test_fields_and_exception_are_stored(
    bus: Bus, pool: asyncpg.Pool, store: RecordStore
) -> None:
    sink = LogSink(bus, store, batch_records=1, batch_interval=0.05)
    await sink.start()
    try:
        record = make_record(fields={"attempt": 2, "queue": "q"}, exception="Traceback ...")
        await publish(bus, [record])
        await eventually(lambda: count(pool), 1)
    finally:
        await sink.stop()

    row = await pool.fetchrow(f"SELECT fields, exception FROM {SCHEMA}.records")
    assert json.loads(row["fields"]) == {"attempt": 2, "queue": "q"}
    assert row["exception"] == "Traceback ..."
