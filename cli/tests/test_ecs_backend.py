"""The ECS backend against moto's ECS and Application Auto Scaling."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest

from wharf_cli.backend import BackendError
from wharf_cli.ecs import EcsBackend

SERVICES = ["documents", "auth"]


@pytest.fixture
async def cluster(s3_server: str) -> AsyncIterator[tuple[str, Any, Any]]:
    """A moto cluster with the two services; documents has a scalable target of 1..8."""
    name = f"wharf-test-{uuid.uuid4().hex[:8]}"
    session = aioboto3.Session()
    async with (
        session.client("ecs", endpoint_url=s3_server) as ecs,
        session.client("application-autoscaling", endpoint_url=s3_server) as autoscaling,
    ):
        await ecs.create_cluster(clusterName=name)
        await ecs.register_task_definition(
            family="wharf-test",
            containerDefinitions=[{"name": "app", "image": "wharf/test", "memory": 512}],
        )
        for service in SERVICES:
            await ecs.create_service(
                cluster=name,
                serviceName=f"wharf-{service}",
                taskDefinition="wharf-test",
                desiredCount=1,
            )
        await autoscaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=f"service/{name}/wharf-documents",
            ScalableDimension="ecs:service:DesiredCount",
            MinCapacity=1,
            MaxCapacity=8,
        )
        yield name, ecs, autoscaling


@pytest.fixture
async def backend(cluster: tuple[str, Any, Any], s3_server: str) -> AsyncIterator[EcsBackend]:
    backend = EcsBackend(cluster[0], SERVICES, endpoint_url=s3_server)
    yield backend
    await backend.close()


async def _bounds(cluster: tuple[str, Any, Any]) -> tuple[int, int]:
    name, _, autoscaling = cluster
    answer = await autoscaling.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[f"service/{name}/wharf-documents"]
    )
    target = answer["ScalableTargets"][0]
    return target["MinCapacity"], target["MaxCapacity"]


async def test_status_reports_desired_counts_and_owners(backend: EcsBackend) -> None:
    states = await backend.status()

    assert [(s.name, s.desired, s.autoscaler, s.pinned) for s in states] == [
        ("documents", 1, "ecs", False),
        ("auth", 1, None, False),
    ]


async def test_scale_without_autoscaler_sets_desired_count(
    backend: EcsBackend, cluster: tuple[str, Any, Any]
) -> None:
    state = await backend.scale("auth", 3)

    described = await cluster[1].describe_services(cluster=cluster[0], services=["wharf-auth"])
    assert described["services"][0]["desiredCount"] == 3
    assert (state.desired, state.autoscaler, state.pinned) == (3, None, False)


async def test_scale_pins_the_scalable_target_and_release_restores_it(
    backend: EcsBackend, cluster: tuple[str, Any, Any]
) -> None:
    pinned = await backend.scale("documents", 4)
    bounds_pinned = await _bounds(cluster)
    again = await backend.scale("documents", 2)
    bounds_again = await _bounds(cluster)
    released = await backend.release("documents")

    assert (pinned.desired, pinned.pinned) == (4, True)
    assert bounds_pinned == (4, 4)
    assert (again.desired, bounds_again) == (2, (2, 2))
    assert released.pinned is False
    assert await _bounds(cluster) == (1, 8)


async def test_unknown_service_is_refused(backend: EcsBackend) -> None:
    with pytest.raises(BackendError, match="unknown service 'nope'"):
        await backend.scale("nope", 1)
