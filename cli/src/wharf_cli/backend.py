"""Where tasks run, behind one interface: `scale` and `status` mean the same on every backend.

The local stack (`LocalBackend`, talking to the supervisor of ``wharf up``) is
the only backend today; ECS and Kubernetes backends implement the same class.
"""

from __future__ import annotations

import abc
from typing import Literal

from pydantic import BaseModel

TaskPhase = Literal["starting", "running", "stopping", "backoff", "exited"]


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


class Backend(abc.ABC):
    """Changes and reports task counts of services wherever they run."""

    @abc.abstractmethod
    async def status(self) -> list[ServiceState]:
        """Every service's desired count and tasks."""

    @abc.abstractmethod
    async def scale(self, service: str, count: int) -> ServiceState:
        """Set a service's desired task count; returns at once, without waiting."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend's connections."""
