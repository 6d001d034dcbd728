"""``wharf autoscale``: task counts from queue depth and measured throughput, on any backend.

The policy is `decide`, a pure function. Each round the `Autoscaler` reads every
scaled service's backlog (ready plus unacknowledged messages on its work queues)
and acknowledgement rate from RabbitMQ's management API, adds the work a service
holds outside the bus where it declares a backlog query (the documents service's
batch items waiting in PostgreSQL), reads its task counts from the backend, then
sets the counts `decide` asks for. Scaling out is
immediate; scaling in waits for a cooldown after the last change. A task that
is scaled in drains first (SIGTERM, then `WHARF_STOP_TIMEOUT` to finish what it
holds), so no job is lost. On ECS and Kubernetes `scale` pins the native
autoscaler, so the two never fight; ``wharf scale SERVICE --release`` hands a
service back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import asyncpg

from wharf_cli.backend import Backend
from wharf_common.queues import Backlog, backlogs, fetch_queues, held_backlog

logger = logging.getLogger(__name__)

# Seconds to connect to PostgreSQL for the backlog queries.
_DATABASE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Limits:
    """The task counts a service is kept between."""

    min_tasks: int
    max_tasks: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_tasks <= self.max_tasks:
            raise ValueError(f"bad limits {self.min_tasks}:{self.max_tasks}")


@dataclass(frozen=True)
class Policy:
    """How fast a backlog should drain, and how long to wait before scaling in."""

    # Enough tasks that the backlog drains within this many seconds.
    target_seconds: float = 60.0
    # No scale-in until this long after the last change: a backlog often comes in waves.
    cooldown: float = 120.0
    # Messages per second one task handles, until a rate has been measured.
    default_rate: float = 1.0

    def __post_init__(self) -> None:
        if not self.target_seconds > 0 or not self.default_rate > 0 or not self.cooldown >= 0:
            raise ValueError(
                f"bad policy: target_seconds {self.target_seconds} and default_rate"
                f" {self.default_rate} must be above 0, cooldown {self.cooldown} at least 0"
            )


@dataclass(frozen=True)
class Reading:
    """One service as seen this round."""

    depth: int
    ack_rate: float
    consumers: int
    desired: int


@dataclass(frozen=True)
class Decision:
    """The count to run and why; `rate` is the per-task rate the decision used."""

    count: int
    reason: str
    rate: float


def decide(
    reading: Reading,
    limits: Limits,
    policy: Policy,
    *,
    since_change: float,
    known_rate: float | None = None,
) -> Decision:
    """The task count for one service, within `limits`.

    A task's throughput is the measured acknowledgement rate over the queues'
    consumers when there is one, else the last one measured, else the policy's
    default. Enough tasks to drain the backlog within the target; never fewer
    than one while there is a backlog; fewer than now only after the cooldown.
    """
    rate = known_rate or policy.default_rate
    if reading.ack_rate > 0 and reading.consumers > 0:
        rate = reading.ack_rate / reading.consumers

    needed = math.ceil(reading.depth / (rate * policy.target_seconds))
    if reading.depth > 0:
        needed = max(needed, 1)
    count = min(max(needed, limits.min_tasks), limits.max_tasks)

    if count > reading.desired:
        return Decision(count, f"backlog {reading.depth} at {rate:.1f}/s a task", rate)
    if count < reading.desired and since_change < policy.cooldown:
        return Decision(reading.desired, "cooling down", rate)
    if count < reading.desired:
        return Decision(count, f"backlog {reading.depth} needs fewer tasks", rate)
    return Decision(count, "steady", rate)


@dataclass
class _Memory:
    changed_at: float = field(default=-math.inf)
    rate: float | None = None


class Autoscaler:
    """Runs `decide` for each scaled service and applies the answer through a backend."""

    def __init__(
        self,
        backend: Backend,
        limits: Mapping[str, Limits],
        management_url: str,
        *,
        vhost: str | None = None,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
        database_url: str | None = None,
        backlog_queries: Mapping[str, str] | None = None,
    ) -> None:
        self._backend = backend
        self._limits = dict(limits)
        self._management_url = management_url
        self._vhost = vhost
        self._policy = policy or Policy()
        self._clock = clock
        self._database_url = database_url
        queries = backlog_queries or {}
        self._queries = {name: query for name, query in queries.items() if name in self._limits}
        self._memory = {service: _Memory() for service in self._limits}

    async def step(self) -> dict[str, Decision]:
        """One round: read, decide, scale where the count changes.

        A service whose backlog query cannot be answered this round keeps its
        count: a depth without its held work could scale it in under a load.
        """
        queues = await fetch_queues(self._management_url, self._vhost)
        found = backlogs(queues, self._limits)
        held = await self._held()
        states = {state.name: state for state in await self._backend.status()}
        decisions = {}
        for service, limits in self._limits.items():
            state = states.get(service)
            if state is None:
                continue
            backlog = found[service]
            if service in self._queries:
                count = held.get(service)
                if count is None:
                    continue
                backlog = backlog.plus_held(count)
            decision = self._decide(service, limits, backlog, state.desired)
            decisions[service] = decision
            if decision.count != state.desired:
                logger.info(
                    "autoscale %s: %d -> %d (%s)",
                    service,
                    state.desired,
                    decision.count,
                    decision.reason,
                )
                await self._backend.scale(service, decision.count)
                self._memory[service].changed_at = self._clock()
        return decisions

    async def _held(self) -> dict[str, int]:
        """Work each service with a backlog query holds outside the bus; failures are left out."""
        if not self._queries:
            return {}
        if self._database_url is None:
            logger.warning("no database to count held backlog of %s", ", ".join(self._queries))
            return {}
        try:
            conn = await asyncpg.connect(self._database_url, timeout=_DATABASE_TIMEOUT)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            logger.warning("held backlog not read: %s", exc)
            return {}
        held: dict[str, int] = {}
        try:
            for service, query in self._queries.items():
                try:
                    held[service] = await held_backlog(conn, query)
                except asyncpg.PostgresError as exc:
                    # For instance a service that has not created its schema yet.
                    logger.warning("held backlog of %s not read: %s", service, exc)
        finally:
            await conn.close()
        return held

    def _decide(self, service: str, limits: Limits, backlog: Backlog, desired: int) -> Decision:
        memory = self._memory[service]
        reading = Reading(backlog.depth, backlog.ack_rate, backlog.consumers, desired)
        decision = decide(
            reading,
            limits,
            self._policy,
            since_change=self._clock() - memory.changed_at,
            known_rate=memory.rate,
        )
        if backlog.ack_rate > 0:
            memory.rate = decision.rate
        return decision

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Step every `interval` seconds until `stop` is set; a failed round is logged."""
        while not stop.is_set():
            try:
                await self.step()
            except Exception as exc:
                # A round that fails (a backend or the management API away) is retried next.
                logger.warning("autoscale round failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
