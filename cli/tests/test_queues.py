"""Queue depth per service, from RabbitMQ's management API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pytest

from wharf_cli.backend import ServiceState
from wharf_cli.settings import CliSettings
from wharf_cli.stack import print_table, stack_depths
from wharf_common.queues import depths, queue_depths, vhost_of

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672/"


def test_depth_sums_ready_and_unacked_over_the_service_prefix() -> None:
    queues: list[dict[str, Any]] = [
        {"name": "wharf.documents.render", "messages_ready": 3, "messages_unacknowledged": 2},
        {"name": "wharf.documents.bundle", "messages_ready": 1, "messages_unacknowledged": 0},
        {"name": "wharf.documents-other.x", "messages_ready": 7, "messages_unacknowledged": 7},
        {"name": "wharf.auth.rpc", "messages_ready": None},
    ]

    assert depths(queues, ["documents", "auth", "gateway"]) == {
        "documents": 6,
        "auth": 0,
        "gateway": 0,
    }


async def test_depth_of_a_real_queue_counts_unacked_messages() -> None:
    service = f"cli-test-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"wharf.{service}.work", auto_delete=False)
        for n in range(3):
            await channel.default_exchange.publish(
                aio_pika.Message(str(n).encode()), routing_key=queue.name
            )
        held = await queue.get(no_ack=False)
        assert held is not None

        # The management API refreshes its counters every few seconds.
        seen = None
        async with asyncio.timeout(30):
            while seen != {service: 3}:
                seen = await queue_depths(MANAGEMENT_URL, [service], "/")
                await asyncio.sleep(0.5)
        await held.ack()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def test_unreachable_management_api_gives_no_depths() -> None:
    assert await queue_depths("http://guest:guest@127.0.0.1:1/", ["auth"], "/") is None


async def _fill(amqp_url: str, queue: str, count: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, auto_delete=False)
        for n in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(str(n).encode()), routing_key=queue
            )
    finally:
        await connection.close()


async def _delete(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
    finally:
        await connection.close()


async def test_stack_tables_count_only_the_stacks_own_virtual_host(
    amqp_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    service = f"cli-test-{uuid.uuid4().hex[:8]}"
    queue = f"wharf.{service}.work"
    await _fill(amqp_url, queue, 2)
    await _fill(AMQP_URL, queue, 5)
    try:
        # The management API refreshes its counters every few seconds.
        seen: list[dict[str, int] | None] = []
        async with asyncio.timeout(30):
            while seen != [{service: 2}, {service: 5}]:
                await asyncio.sleep(0.5)
                seen = [
                    await queue_depths(MANAGEMENT_URL, [service], vhost)
                    for vhost in (vhost_of(amqp_url), "/")
                ]
        settings = CliSettings(amqp_url=amqp_url, management_url=MANAGEMENT_URL)

        assert await stack_depths(settings, [service]) == {service: 2}
        await print_table([ServiceState(name=service, desired=0)], settings)
    finally:
        await _delete(AMQP_URL, queue)

    row = capsys.readouterr().out.splitlines()[1].split()
    assert row == [service, "0", "0", "0", "2", "-"]
