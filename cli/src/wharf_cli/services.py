"""The table of services, for the local stack and the deployments: a new service is one more row."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The most tasks any service runs when its row sets no max_tasks.
TASK_CEILING = 1000


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: as local processes, and in a container."""

    name: str
    default_tasks: int = 1
    # The port a container of the service listens on (WHARF_HTTP_PORT in compose/ and k8s/).
    port: int = 8080
    # The task counts `wharf autoscale` keeps between (it leaves a service
    # without max_tasks alone), and the only ones `wharf scale` without
    # --force and the ops API accept.
    min_tasks: int = 1
    max_tasks: int | None = None
    # A shared public port is bound by every task with SO_REUSEPORT (the
    # supervisor sets WHARF_HTTP_REUSE_PORT for them); other services get a
    # unique WHARF_HTTP_PORT per task.
    shared_http_port: bool = False
    module: str = ""
    command: tuple[str, ...] = ()
    # SQL answering one count: work the service holds in its tables rather than
    # on the bus, which `wharf autoscale` adds to the depth of its queues.
    backlog_query: str = ""

    def __post_init__(self) -> None:
        if not self.module:
            object.__setattr__(self, "module", "wharf_" + self.name.replace("-", "_"))
        low, high = self.task_range()
        if not 0 <= low <= high <= TASK_CEILING:
            raise ValueError(f"service {self.name!r}: bad task range {low} to {high}")

    def task_range(self) -> tuple[int, int]:
        """The lowest and highest task count to run: min_tasks to max_tasks, or the ceiling."""
        return self.min_tasks, TASK_CEILING if self.max_tasks is None else self.max_tasks

    def argv(self) -> list[str]:
        """The command line of one task: `command` if given, else ``python -m module``."""
        if self.command:
            return list(self.command)
        return [sys.executable, "-m", self.module]


# Each documents task starts one render worker per core, so one task already
# uses the whole machine; more local tasks would share the cores, not add any.
# Its batch items wait in PostgreSQL until they are fed to the bus: the view
# documents.backlog counts them, and KEDA's postgresql trigger (k8s/) and the
# service's own queue-depth metric (ECS) run the same query.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("gateway", port=8080, shared_http_port=True),
    ServiceSpec("auth", port=8081),
    ServiceSpec(
        "documents", port=8082, max_tasks=8, backlog_query="SELECT items FROM documents.backlog"
    ),
    ServiceSpec("carrier-ingest", port=8083, max_tasks=8),
    ServiceSpec("log-sink", port=8084),
    ServiceSpec("webhooks", port=8085),
)


def service_table(specs: Iterable[ServiceSpec]) -> dict[str, ServiceSpec]:
    """Index specs by name, refusing duplicates."""
    table: dict[str, ServiceSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"service {spec.name!r} listed twice")
        table[spec.name] = spec
    return table


def load_services(path: Path | None) -> tuple[ServiceSpec, ...]:
    """The built-in table, or the one in a TOML file of ``[[service]]`` tables.

    Each entry takes the fields of `ServiceSpec`: ``name``, and optionally
    ``default_tasks``, ``port``, ``min_tasks``, ``max_tasks``, ``shared_http_port``,
    ``module``, ``command`` or ``backlog_query``.
    """
    if path is None:
        return SERVICES
    with path.open("rb") as file:
        data = tomllib.load(file)
    specs = []
    for entry in data.get("service", []):
        fields = dict(entry)
        if "command" in fields:
            fields["command"] = tuple(str(arg) for arg in fields["command"])
        specs.append(ServiceSpec(**fields))
    service_table(specs)
    return tuple(specs)
