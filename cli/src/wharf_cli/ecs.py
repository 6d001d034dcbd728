"""The ECS backend: task counts through UpdateService, pins through Service Auto Scaling.

A service ``<name>`` is the ECS service ``<prefix><name>`` in one cluster. When
Application Auto Scaling has a scalable target for it, `scale` first pins the
target (min = max = N) and records the bounds it had as tags on the ECS service,
so `release` can restore them; then it sets the desired count.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import aioboto3

from wharf_cli.backend import (
    Backend,
    BackendConfigError,
    BackendError,
    ServiceState,
    TaskPhase,
    TaskState,
)

logger = logging.getLogger(__name__)

_MIN_TAG = "wharf:released-min"
_MAX_TAG = "wharf:released-max"
_DIMENSION = "ecs:service:DesiredCount"
_PHASES: dict[str, TaskPhase] = {
    "PROVISIONING": "starting",
    "PENDING": "starting",
    "ACTIVATING": "starting",
    "RUNNING": "running",
    "DEACTIVATING": "stopping",
    "STOPPING": "stopping",
    "DEPROVISIONING": "stopping",
    "STOPPED": "exited",
}


class EcsBackend(Backend):
    """Scale and status of Wharf's services in one ECS cluster."""

    def __init__(
        self,
        cluster: str,
        services: Sequence[str],
        *,
        prefix: str = "wharf-",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self._cluster = cluster
        self._services = list(services)
        self._prefix = prefix
        self._endpoint_url = endpoint_url
        self._region = region
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}

    async def _client(self, name: str) -> Any:
        if name not in self._clients:
            # botocore reads AWS_DEFAULT_REGION only; ECS and most tools set AWS_REGION too.
            region = self._region or os.environ.get("AWS_REGION") or None
            session = aioboto3.Session(region_name=region)
            if session.region_name is None:
                raise BackendConfigError(
                    "the ecs backend needs an AWS region: set AWS_REGION (or"
                    " AWS_DEFAULT_REGION, or a region in the AWS_PROFILE's config)"
                )
            client = session.client(name, endpoint_url=self._endpoint_url)
            self._clients[name] = await self._stack.enter_async_context(client)
        return self._clients[name]

    def _check(self, service: str) -> str:
        if service not in self._services:
            known = ", ".join(self._services)
            raise BackendError(f"unknown service {service!r} (known: {known})")
        return self._prefix + service

    def _resource_id(self, ecs_name: str) -> str:
        return f"service/{self._cluster}/{ecs_name}"

    async def _target(self, ecs_name: str) -> dict[str, Any] | None:
        autoscaling = await self._client("application-autoscaling")
        answer = await autoscaling.describe_scalable_targets(
            ServiceNamespace="ecs",
            ResourceIds=[self._resource_id(ecs_name)],
            ScalableDimension=_DIMENSION,
        )
        targets: list[dict[str, Any]] = answer.get("ScalableTargets", [])
        return targets[0] if targets else None

    async def _describe(self, ecs_names: list[str]) -> list[dict[str, Any]]:
        ecs = await self._client("ecs")
        answer = await ecs.describe_services(
            cluster=self._cluster, services=ecs_names, include=["TAGS"]
        )
        found: list[dict[str, Any]] = [
            s for s in answer.get("services", []) if s.get("status") != "INACTIVE"
        ]
        return found

    async def _tasks(self, ecs_name: str) -> list[TaskState]:
        ecs = await self._client("ecs")
        arns = (await ecs.list_tasks(cluster=self._cluster, serviceName=ecs_name))["taskArns"]
        if not arns:
            return []
        described = await ecs.describe_tasks(cluster=self._cluster, tasks=arns)
        tasks = []
        for task in described["tasks"]:
            phase = _PHASES.get(str(task.get("lastStatus")), "starting")
            health = task.get("healthStatus", "UNKNOWN")
            ready = phase == "running" and health in ("HEALTHY", "UNKNOWN")
            name = str(task["taskArn"]).rsplit("/", 1)[-1]
            tasks.append(TaskState(name=name, phase=phase, ready=ready))
        return tasks

    async def _state(self, service: str, described: dict[str, Any]) -> ServiceState:
        tags = {tag["key"]: tag["value"] for tag in described.get("tags", [])}
        target = await self._target(described["serviceName"])
        return ServiceState(
            name=service,
            desired=int(described["desiredCount"]),
            tasks=await self._tasks(described["serviceName"]),
            autoscaler="ecs" if target else None,
            pinned=target is not None and _MIN_TAG in tags,
        )

    async def status(self) -> list[ServiceState]:
        """Every service found in the cluster: desired count, tasks, and its pin."""
        names = {self._prefix + service: service for service in self._services}
        states = []
        # DescribeServices takes at most ten services a call.
        ecs_names = list(names)
        for start in range(0, len(ecs_names), 10):
            for described in await self._describe(ecs_names[start : start + 10]):
                states.append(await self._state(names[described["serviceName"]], described))
        order = {service: i for i, service in enumerate(self._services)}
        return sorted(states, key=lambda state: order[state.name])

    async def _only(self, service: str) -> dict[str, Any]:
        ecs_name = self._check(service)
        found = await self._describe([ecs_name])
        if not found:
            raise BackendError(f"no ECS service {ecs_name} in cluster {self._cluster}")
        return found[0]

    async def scale(self, service: str, count: int) -> ServiceState:
        """Pin the scalable target, if any, to `count`, then set the desired count."""
        if count < 0:
            raise BackendError("a task count cannot be negative")
        described = await self._only(service)
        ecs_name = described["serviceName"]
        target = await self._target(ecs_name)
        ecs = await self._client("ecs")
        if target is not None:
            tags = {tag["key"]: tag["value"] for tag in described.get("tags", [])}
            if _MIN_TAG not in tags:
                await ecs.tag_resource(
                    resourceArn=described["serviceArn"],
                    tags=[
                        {"key": _MIN_TAG, "value": str(target["MinCapacity"])},
                        {"key": _MAX_TAG, "value": str(target["MaxCapacity"])},
                    ],
                )
            await self._register(ecs_name, count, count)
            logger.info("pinned the scalable target of %s at %d", ecs_name, count)
        await ecs.update_service(cluster=self._cluster, service=ecs_name, desiredCount=count)
        return await self._state(service, (await self._describe([ecs_name]))[0])

    async def _register(self, ecs_name: str, low: int, high: int) -> None:
        autoscaling = await self._client("application-autoscaling")
        await autoscaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=self._resource_id(ecs_name),
            ScalableDimension=_DIMENSION,
            MinCapacity=low,
            MaxCapacity=high,
        )

    async def release(self, service: str) -> ServiceState:
        """Restore the scalable target's own bounds; Service Auto Scaling takes over."""
        described = await self._only(service)
        ecs_name = described["serviceName"]
        tags = {tag["key"]: tag["value"] for tag in described.get("tags", [])}
        if _MIN_TAG in tags and await self._target(ecs_name) is not None:
            await self._register(ecs_name, int(tags[_MIN_TAG]), int(tags[_MAX_TAG]))
            ecs = await self._client("ecs")
            await ecs.untag_resource(
                resourceArn=described["serviceArn"], tagKeys=[_MIN_TAG, _MAX_TAG]
            )
            logger.info("released %s to Service Auto Scaling", ecs_name)
        return await self._state(service, (await self._describe([ecs_name]))[0])

    async def close(self) -> None:
        """Close the AWS clients."""
        await self._stack.aclose()
        self._clients.clear()
