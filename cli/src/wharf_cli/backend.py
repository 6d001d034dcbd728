"""Where tasks run, behind one interface: `scale` and `status` mean the same on every backend.

Three backends implement it: the local stack (`LocalBackend`, talking to the
supervisor of ``wharf up``), ECS (`EcsBackend`) and Kubernetes
(`KubernetesBackend`). Where an autoscaler owns a service, `scale` pins it to
the count asked for and `release` hands control back: a fixed count never
fights an autoscaler.
"""

from __future__ import annotations

import abc
from typing import Literal

from pydantic import BaseModel

TaskPhase = Literal["starting", "running", "stopping", "backoff", "exited"]
Autoscaler = Literal["hpa", "keda", "ecs"]


class TaskState(BaseModel):
    """One task of a service as its backend sees it."""

    name: str
    phase: TaskPhase
    ready: bool = False
    pid: int | None = None
    ops_port: int | None = None
    http_port: int | None = None
    restarts: int = 0
    exit_code: int | None = None


class ServiceState(BaseModel):
    """A service's desired and running task counts and its tasks."""

    name: str
    desired: int
    tasks: list[TaskState] = []
    # The autoscaler that owns the service, if any, and whether `scale` has pinned it.
    autoscaler: Autoscaler | None = None
    pinned: bool = False

    @property
    def running(self) -> int:
        """Tasks that count towards the desired number (not draining)."""
        return sum(1 for task in self.tasks if task.phase in ("starting", "running"))

    @property
    def ready(self) -> int:
        """Tasks that answer /readyz with 200."""
        return sum(1 for task in self.tasks if task.ready and task.phase == "running")

    @property
    def settled(self) -> bool:
        """Every desired task is ready and no surplus task is still draining."""
        return self.ready == self.desired and len(self.tasks) == self.desired


class BackendError(Exception):
    """The backend refused or failed a request; the message is for the user."""


class BackendConfigError(BackendError):
    """The backend lacks a setting it needs to reach anything; the message names it."""


class Backend(abc.ABC):
    """Changes and reports task counts of services wherever they run."""

    @abc.abstractmethod
    async def status(self) -> list[ServiceState]:
        """Every service's desired count and tasks."""

    @abc.abstractmethod
    async def scale(self, service: str, count: int) -> ServiceState:
        """Set a service's desired task count; returns at once, without waiting."""

    async def release(self, service: str) -> ServiceState:
        """Hand the service back to its autoscaler; a no-op where none owns it."""
        return await self.state(service)

    async def state(self, service: str) -> ServiceState:
        """One service's state."""
        for state in await self.status():
            if state.name == service:
                return state
        raise BackendError(f"unknown service {service!r}")

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend's connections."""
