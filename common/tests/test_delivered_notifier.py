from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import asyncpg
import pytest

from wharf_common import events
from wharf_common.bus import Bus
from wharf_common.settings import ServiceSettings
from wharf_common.storage import open_store
from wharf_common.subscriber import events_queue

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUEUE = events_queue("delivered-notifier")


@pytest.fixture(scope="module")
def notifier() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module("delivered_notifier")
    finally:
        sys.path.remove(str(EXAMPLES))


def _change(status: events.ShipmentStatus, tenant: str = "t1") -> Any:
    body = events.ShipmentStatusChanged(
        shipment_id=uuid.uuid4(),
        carrier="dhl_express",
        tracking_number=uuid.uuid4().hex[:12],
        status=status,
        status_at=datetime.now(UTC),
        event_id=uuid.uuid4().hex,
    )
    return events.event_envelope(body, tenant=tenant)


async def _count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(sql)
        return value
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def _wait_for(database_url: str, sql: str, at_least: int, timeout: float) -> int:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        count = await _count(database_url, sql)
        if count >= at_least or loop.time() > end:
            return count
        await asyncio.sleep(0.02)


NOTIFIED = "SELECT count(*) FROM delivered_notifier.notifications"
DISTINCT = "SELECT count(DISTINCT event_id) FROM delivered_notifier.notifications"


async def test_notifier_records_deliveries_once_and_resolves_claim_checks(
    notifier: ModuleType,
    amqp_url: str,
    database_url: str,
    tmp_path: Path,
    start_service: Any,
) -> None:
    storage_url = f"file://{tmp_path}/objects"
    settings = ServiceSettings(
        amqp_url=amqp_url, database_url=database_url, storage_url=storage_url, log_to_bus=False
    )
    await start_service(notifier.spec(), settings)
    store = await open_store(storage_url, signing_key="k", public_url="http://127.0.0.1")
    bus = Bus(amqp_url, service="test", store=store, claim_check_threshold=64)
    await bus.connect()
    try:
        delivered = _change(events.ShipmentStatus.DELIVERED)
        await bus.publish_event(delivered)
        await bus.publish_event(delivered)
        await bus.publish_event(_change(events.ShipmentStatus.IN_TRANSIT))
        assert await _wait_for(database_url, NOTIFIED, 1, 10) == 1
        await asyncio.sleep(0.5)
    finally:
        await bus.close()
        await store.close()

    assert await _count(database_url, NOTIFIED) == 1


async def test_notifier_dead_letters_an_event_that_breaks_its_model(
    notifier: ModuleType,
    amqp_url: str,
    database_url: str,
    tmp_path: Path,
    start_service: Any,
    published_events_match_catalog: list[str],
) -> None:
    settings = ServiceSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"file://{tmp_path}/objects",
        log_to_bus=False,
    )
    running = await start_service(notifier.spec(), settings)
    broken = _change(events.ShipmentStatus.DELIVERED)
    broken.body["status"] = "teleported"
    await running.runtime.bus.publish_event(broken)
    published_events_match_catalog.clear()

    channel = await running.runtime.bus.channel()
    dead = await channel.declare_queue(f"{QUEUE}.dead", passive=True)
    for _ in range(200):
        message = await dead.get(fail=False)
        if message is not None:
            break
        await asyncio.sleep(0.05)
    assert message is not None
    assert "status" in message.headers["x-wharf-dead-reason"]
    await channel.close()


async def _publish_all(bus: Bus, envelopes: list[Any]) -> None:
    for envelope in envelopes:
        await bus.publish_event(envelope)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "delivered_notifier"], env=env, stdout=out, stderr=out
        )


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


async def _start_notifier(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = _spawn(env, log)
    url = f"http://127.0.0.1:{env['WHARF_HTTP_PORT']}/readyz"
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            assert process.poll() is None, _read(log)
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError(f"the notifier never became ready:\n{_read(log)}")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_notifier_killed_mid_stream_loses_nothing_and_notifies_nothing_twice(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
        "WHARF_AMQP_URL": amqp_url,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_STORAGE_URL": f"file://{tmp_path}/objects",
        "WHARF_HTTP_HOST": "127.0.0.1",
        "WHARF_HTTP_PORT": str(_free_port()),
        "WHARF_LOG_TO_BUS": "false",
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_STOP_TIMEOUT": "2",
    }
    log = tmp_path / "notifier.log"
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    process = await _start_notifier(env, log)
    try:
        first = [_change(events.ShipmentStatus.DELIVERED) for _ in range(800)]
        publishing = asyncio.create_task(_publish_all(bus, first))
        seen = await _wait_for(database_url, NOTIFIED, 50, 30)
        process.send_signal(signal.SIGKILL)
        process.wait()
        at_kill = await _count(database_url, NOTIFIED)
        assert 50 <= seen <= at_kill < len(first), "the kill did not land mid-stream"

        # Published while the consumer is down: its durable queue keeps them.
        await publishing
        missed = [_change(events.ShipmentStatus.DELIVERED) for _ in range(100)]
        for envelope in missed:
            await bus.publish_event(envelope)
        await bus.publish_event(_change(events.ShipmentStatus.IN_TRANSIT))

        process = await _start_notifier(env, log)
        total = len(first) + len(missed)
        assert await _wait_for(database_url, NOTIFIED, total, 60) == total
        await asyncio.sleep(1.0)
        assert await _count(database_url, NOTIFIED) == total
        assert await _count(database_url, DISTINCT) == total
    finally:
        await bus.close()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
