from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aio_pika

from wharf_common import deadletters
from wharf_common.bus import Bus
from wharf_common.consumer import Delivery


async def test_dlq_lists_and_replays_dead_letters(amqp_url: str) -> None:
    queue = "wharf.test.work"
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    try:

        async def refuse(delivery: Delivery) -> None:
            raise AssertionError("never called for a message that is not an envelope")

        consumer = await bus.consume(queue, refuse)
        await bus.publish_message("", queue, aio_pika.Message(b"{broken"))
        async with asyncio.timeout(10):
            while not await deadletters.inspect(bus, queue):
                await asyncio.sleep(0.05)
        await consumer.stop(timeout=1)
    finally:
        await bus.close()

    env = {**os.environ, "WHARF_AMQP_URL": amqp_url}

    def wharf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wharf_cli", "dlq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = wharf("list", queue, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert len(letters) == 1
    assert letters[0]["reason"].startswith("invalid: ")

    replayed = wharf("replay", queue)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1" in replayed.stdout
    assert json.loads(wharf("list", queue, "--json").stdout) == []


def test_dlq_of_an_unknown_queue_says_so_and_creates_nothing(amqp_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wharf_cli", "dlq", "list", "wharf.nosuch"],
        env={**os.environ, "WHARF_AMQP_URL": amqp_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "'wharf.nosuch' has no dead-letter queue" in result.stderr
