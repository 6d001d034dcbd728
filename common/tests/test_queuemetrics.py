"""Queue depth published to CloudWatch, against RabbitMQ and moto's CloudWatch."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aio_pika
import aioboto3

from wharf_common.queuemetrics import NAMESPACE, metric_data, publish_once
from wharf_common.queues import Backlog, backlogs, is_work_queue
from wharf_common.settings import ServiceSettings
from wharf_common.testing import DEFAULT_MANAGEMENT_URL


def test_backlog_counts_work_queues_only() -> None:
    queues: list[dict[str, Any]] = [
        {"name": "wharf.documents.render", "messages_ready": 3, "messages_unacknowledged": 2,
         "consumers": 2, "message_stats": {"ack_details": {"rate": 4.5}}},
        {"name": "wharf.documents.bundle", "messages_ready": 1, "consumers": 1},
        {"name": "wharf.documents.render.dead", "messages_ready": 50},
        {"name": "wharf.documents.render.retry.500ms", "messages_ready": 9},
    ]  # fmt: skip

    found = backlogs(queues, ["documents", "auth"])

    assert found == {
        "documents": Backlog(depth=6, consumers=2, ack_rate=4.5),
        "auth": Backlog(),
    }
    assert not is_work_queue("wharf.documents-x.render", "documents")


def test_metric_data_has_depth_and_depth_per_task() -> None:
    data = metric_data("documents", Backlog(depth=30, consumers=3))

    assert [(d["MetricName"], d["Value"]) for d in data] == [
        ("QueueDepth", 30.0),
        ("QueueDepthPerTask", 10.0),
    ]
    assert data[0]["Dimensions"] == [{"Name": "Service", "Value": "documents"}]


def test_held_backlog_adds_to_depth_and_depth_per_task() -> None:
    backlog = Backlog(depth=6, consumers=2, ack_rate=1.5).plus_held(24)

    assert backlog == Backlog(depth=30, consumers=2, ack_rate=1.5, held=24)
    assert [d["Value"] for d in metric_data("documents", backlog)] == [30.0, 15.0]


async def test_depth_reaches_cloudwatch(amqp_url: str, s3_server: str) -> None:
    settings = ServiceSettings(
        amqp_url=amqp_url,
        management_url=os.environ.get("WHARF_TEST_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL),
        queue_metrics_endpoint_url=s3_server,
    )
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name, count in (("wharf.sample.work", 7), ("wharf.sample.work.dead", 5)):
            await channel.declare_queue(name, durable=True)
            for n in range(count):
                message = aio_pika.Message(body=str(n).encode())
                await channel.default_exchange.publish(message, routing_key=name)

        session = aioboto3.Session()
        async with session.client("cloudwatch", endpoint_url=s3_server) as cloudwatch:
            # The management API refreshes its queue figures every few seconds.
            async with asyncio.timeout(30):
                while (await publish_once(settings, "sample", cloudwatch)).depth != 7:
                    await asyncio.sleep(0.5)
            with_held = await publish_once(settings, "sample", cloudwatch, held_items)
            listed = await cloudwatch.list_metrics(
                Namespace=NAMESPACE, Dimensions=[{"Name": "Service", "Value": "sample"}]
            )

    assert (with_held.depth, with_held.held) == (7 + 5, 5)
    assert {metric["MetricName"] for metric in listed["Metrics"]} == {
        "QueueDepth",
        "QueueDepthPerTask",
    }


async def held_items() -> int:
    """Work held outside the bus, as a service's backlog query would count it."""
    return 5
