"""Publishes a service's queue depth to CloudWatch, for ECS Service Auto Scaling.

Every task of a service publishes the same figures, which is harmless: scaling
policies read their average. Two metrics in namespace ``Wharf``, dimension
``Service``: ``QueueDepth`` (ready plus unacknowledged messages on its work
queues, plus the work it holds outside the bus when it declares a backlog
query) and ``QueueDepthPerTask`` (that over the queues' consumers, one per
task), which a target-tracking policy can hold at a backlog per task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aioboto3
import aiohttp

from wharf_common.queues import Backlog, backlogs, fetch_queues, vhost_of
from wharf_common.settings import ServiceSettings

logger = logging.getLogger(__name__)

NAMESPACE = "Wharf"


def metric_data(service: str, backlog: Backlog) -> list[dict[str, Any]]:
    """The PutMetricData entries for one reading of `service`'s backlog."""
    dimensions = [{"Name": "Service", "Value": service}]
    per_task = backlog.depth / max(1, backlog.consumers)
    return [
        {
            "MetricName": "QueueDepth",
            "Dimensions": dimensions,
            "Value": float(backlog.depth),
            "Unit": "Count",
        },
        {
            "MetricName": "QueueDepthPerTask",
            "Dimensions": dimensions,
            "Value": per_task,
            "Unit": "Count",
        },
    ]


HeldCount = Callable[[], Awaitable[int]]


async def read_backlog(
    settings: ServiceSettings, service: str, held: HeldCount | None = None
) -> Backlog:
    """`service`'s backlog in the virtual host its AMQP URL names, plus what `held` counts."""
    queues = await fetch_queues(settings.management_url, vhost_of(settings.amqp_url))
    backlog = backlogs(queues, [service])[service]
    if held is None:
        return backlog
    return backlog.plus_held(await held())


async def publish_once(
    settings: ServiceSettings, service: str, cloudwatch: Any, held: HeldCount | None = None
) -> Backlog:
    """Read the backlog once and put it to CloudWatch."""
    backlog = await read_backlog(settings, service, held)
    await cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=metric_data(service, backlog))
    return backlog


async def publish_forever(
    settings: ServiceSettings, service: str, held: HeldCount | None = None
) -> None:
    """Publish every ``queue_metrics_interval`` seconds until cancelled; failures are logged.

    `held` counts the work the service holds outside the bus (its backlog
    query); a round whose count fails publishes nothing rather than a depth
    that leaves that work out and invites a scale-in.
    """
    session = aioboto3.Session()
    async with session.client(
        "cloudwatch", endpoint_url=settings.queue_metrics_endpoint_url
    ) as cloudwatch:
        while True:
            try:
                backlog = await publish_once(settings, service, cloudwatch, held)
                logger.debug("published queue depth %d of %s", backlog.depth, service)
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("queue depth not read: %s", exc)
            except Exception as exc:
                # Botocore's errors share no useful base; a failed put is retried next round.
                logger.warning("queue depth not published: %s", exc)
            await asyncio.sleep(settings.queue_metrics_interval)
