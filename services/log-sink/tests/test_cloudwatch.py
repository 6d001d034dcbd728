from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
import asyncpg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from wharf_log_sink import metrics
from wharf_log_sink.cloudwatch import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_EVENTS,
    MAX_SPAN_MS,
    Event,
    Forwarder,
    plan_batches,
)
from wharf_log_sink.db import SCHEMA, RecordStore, to_row
from wharf_log_sink.settings import LogSinkSettings

from .conftest import make_record

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """Endpoint of moto's standalone server, for CloudWatch Logs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _client_factory(moto_url: str) -> Any:
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return lambda: session.client("logs", endpoint_url=moto_url, config=config)


def _event(ms: int, size: int = 10) -> Event:
    return Event(timestamp=ms, message="x" * size, key=(datetime.now(UTC), uuid.uuid4()))


def test_batches_hold_at_most_ten_thousand_events() -> None:
    batches = plan_batches([_event(i) for i in range(25_001)])
    assert [len(b) for b in batches] == [MAX_EVENTS, MAX_EVENTS, 5001]


def test_batches_stay_within_a_mebibyte_counting_the_overhead() -> None:
    size = 1000
    per_batch = MAX_BATCH_BYTES // (size + EVENT_OVERHEAD)
    batches = plan_batches([_event(i, size) for i in range(per_batch * 2 + 1)])

    assert [len(b) for b in batches] == [per_batch, per_batch, 1]
    assert all(sum(e.size for e in b) <= MAX_BATCH_BYTES for b in batches)
    exact = plan_batches([_event(0, MAX_BATCH_BYTES - EVENT_OVERHEAD), _event(1, 0)])
    assert [len(b) for b in exact] == [1, 1]


def test_batches_span_less_than_a_day_in_order() -> None:
    events = [_event(MAX_SPAN_MS), _event(0), _event(MAX_SPAN_MS - 1), _event(5)]
    batches = plan_batches(events)
    assert [[e.timestamp for e in b] for b in batches] == [
        [0, 5, MAX_SPAN_MS - 1],
        [MAX_SPAN_MS],
    ]


async def _pending(pool: asyncpg.Pool) -> int:
    value: int = await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.forward_pending")
    return value


async def _stored_for_forwarding(pool: asyncpg.Pool, n: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(minutes=10)
    records = [
        make_record(ts=(start + timedelta(milliseconds=i)).isoformat(), message=f"event {i}")
        for i in range(n)
    ]
    await RecordStore(pool, forward=True).write([to_row(r) for r in reversed(records)])
    return records


async def _cloudwatch_messages(factory: Any, group: str, stream: str) -> list[str]:
    async with factory() as client:
        response = await client.get_log_events(
            logGroupName=group, logStreamName=stream, startFromHead=True, limit=10_000
        )
    return [json.loads(e["message"])["message"] for e in response["events"]]


async def _forward_all(forwarder: Forwarder, client: Any) -> None:
    await forwarder.ensure_stream(client)
    while await forwarder.forward_once(client):
        pass


async def test_records_reach_cloudwatch_once_in_order(pool: asyncpg.Pool, moto_url: str) -> None:
    records = await _stored_for_forwarding(pool, 300)
    factory = _client_factory(moto_url)
    group, stream = f"/wharf/test-{uuid.uuid4().hex[:8]}", "sink-1"
    forwarder = Forwarder(pool, factory, group=group, stream=stream, fetch=120)
    before = metrics.FORWARDED._value.get()

    async with factory() as client:
        await _forward_all(forwarder, client)

    assert await _cloudwatch_messages(factory, group, stream) == [r["message"] for r in records]
    assert await _pending(pool) == 0
    assert metrics.FORWARDED._value.get() - before == 300
    # A redelivered batch is not stored again, so it is not forwarded again.
    await RecordStore(pool, forward=True).write([to_row(r) for r in records])
    assert await _pending(pool) == 0


class _Flaky:
    """Wraps a logs client: PutLogEvents fails as scripted, then behaves."""

    def __init__(self, client: Any, failures: list[str]) -> None:
        self._client = client
        self._failures = failures
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def put_log_events(self, **kwargs: Any) -> Any:
        self.calls += 1
        if not self._failures:
            return await self._client.put_log_events(**kwargs)
        failure = self._failures.pop(0)
        if failure == "timeout-after-accept":
            await self._client.put_log_events(**kwargs)
            raise ReadTimeoutError(endpoint_url="http://cloudwatch")
        error = {"Error": {"Code": failure, "Message": "Rate exceeded"}}
        raise ClientError(error, "PutLogEvents")


async def test_throttling_is_retried_without_loss_or_duplicates(
    pool: asyncpg.Pool, moto_url: str
) -> None:
    records = await _stored_for_forwarding(pool, 50)
    factory = _client_factory(moto_url)
    group, stream = f"/wharf/test-{uuid.uuid4().hex[:8]}", "sink-1"
    forwarder = Forwarder(pool, factory, group=group, stream=stream, backoff=0.01)
    throttled = metrics.FORWARD_RETRIES.labels("ThrottlingException")._value.get()
    duplicates = metrics.FORWARD_DUPLICATES._value.get()

    async with factory() as client:
        flaky = _Flaky(client, ["ThrottlingException", "ThrottlingException"])
        await _forward_all(forwarder, flaky)

    assert flaky.calls == 3
    assert await _cloudwatch_messages(factory, group, stream) == [r["message"] for r in records]
    assert metrics.FORWARD_RETRIES.labels("ThrottlingException")._value.get() - throttled == 2
    assert metrics.FORWARD_DUPLICATES._value.get() == duplicates


async def test_retry_after_a_timeout_is_counted_as_possible_duplicates(
    pool: asyncpg.Pool, moto_url: str
) -> None:
    await _stored_for_forwarding(pool, 20)
    factory = _client_factory(moto_url)
    group, stream = f"/wharf/test-{uuid.uuid4().hex[:8]}", "sink-1"
    forwarder = Forwarder(pool, factory, group=group, stream=stream, backoff=0.01)
    duplicates = metrics.FORWARD_DUPLICATES._value.get()

    async with factory() as client:
        await _forward_all(forwarder, _Flaky(client, ["timeout-after-accept"]))

    assert len(await _cloudwatch_messages(factory, group, stream)) == 40
    assert metrics.FORWARD_DUPLICATES._value.get() - duplicates == 20
    assert await _pending(pool) == 0


async def test_a_failure_that_outlasts_the_retries_keeps_records_pending(
    pool: asyncpg.Pool, moto_url: str
) -> None:
    await _stored_for_forwarding(pool, 5)
    factory = _client_factory(moto_url)
    group, stream = f"/wharf/test-{uuid.uuid4().hex[:8]}", "sink-1"
    forwarder = Forwarder(pool, factory, group=group, stream=stream, give_up_after=0)

    async with factory() as client:
        await forwarder.ensure_stream(client)
        with pytest.raises(ClientError):
            await forwarder.forward_once(_Flaky(client, ["ServiceUnavailableException"]))
        assert await _pending(pool) == 5
        await _forward_all(forwarder, client)

    assert await _pending(pool) == 0
    assert len(await _cloudwatch_messages(factory, group, stream)) == 5


async def test_forwarder_from_settings_creates_its_group_and_stream(
    pool: asyncpg.Pool, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    group = f"/wharf/test-{uuid.uuid4().hex[:8]}"
    settings = LogSinkSettings(
        cloudwatch_enabled=True,
        cloudwatch_log_group=group,
        cloudwatch_endpoint_url=moto_url,
        cloudwatch_region=REGION,
    )
    await _stored_for_forwarding(pool, 3)
    forwarder = Forwarder.from_settings(pool, settings)

    task = asyncio.create_task(forwarder.run(interval=0.05))
    try:
        async with asyncio.timeout(10):
            while await _pending(pool):
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert forwarder.stream.startswith("log-sink-")
    messages = await _cloudwatch_messages(_client_factory(moto_url), group, forwarder.stream)
    assert messages == ["event 0", "event 1", "event 2"]
