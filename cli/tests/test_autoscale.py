"""wharf autoscale: the policy as a pure function, and a backlog on the local stack."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from wharf_cli.autoscale import Autoscaler, Decision, Limits, Policy, Reading, decide
from wharf_cli.backend import Backend, ServiceState
from wharf_cli.home import Home
from wharf_cli.local import ControlServer, LocalBackend
from wharf_cli.services import ServiceSpec
from wharf_cli.supervisor import Supervisor, SupervisorOptions
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.queues import vhost_of
from wharf_common.testing import DEFAULT_MANAGEMENT_URL

SAMPLE = Path(__file__).resolve().parents[2] / "common" / "tests"
QUEUE = "wharf.sample.work"
# Sizes of the local-stack test; raise them for a longer run.
JOBS = int(os.environ.get("WHARF_TEST_AUTOSCALE_JOBS", "120"))
JOB_SECONDS = float(os.environ.get("WHARF_TEST_AUTOSCALE_JOB_SECONDS", "0.2"))

LIMITS = Limits(1, 4)
POLICY = Policy(target_seconds=10.0, cooldown=60.0, default_rate=2.0)


def _decide(depth: int, desired: int, **kwargs: float) -> Decision:
    ack_rate = kwargs.pop("ack_rate", 0.0)
    consumers = int(kwargs.pop("consumers", desired))
    since = kwargs.pop("since_change", 1000.0)
    reading = Reading(depth=depth, ack_rate=ack_rate, consumers=consumers, desired=desired)
    return decide(reading, LIMITS, POLICY, since_change=since, **kwargs)


def test_backlog_raises_the_count_to_drain_within_the_target() -> None:
    # 2 messages/s a task measured; 60 messages in 10 s need 3 tasks.
    decision = _decide(60, 1, ack_rate=2.0, consumers=1)

    assert (decision.count, decision.rate) == (3, 2.0)


def test_count_stays_within_the_limits() -> None:
    assert _decide(10_000, 1).count == LIMITS.max_tasks
    assert _decide(0, 1).count == LIMITS.min_tasks


def test_default_rate_until_one_is_measured_then_the_last_one() -> None:
    assert _decide(40, 1).rate == POLICY.default_rate
    assert _decide(40, 1, known_rate=4.0).count == 1


def test_backlog_keeps_one_task_even_with_a_zero_minimum() -> None:
    reading = Reading(depth=1, ack_rate=0.0, consumers=0, desired=0)

    decision = decide(reading, Limits(0, 3), POLICY, since_change=1000.0)

    assert decision.count == 1


def test_scale_in_waits_for_the_cooldown() -> None:
    early = _decide(0, 4, since_change=POLICY.cooldown - 1)
    later = _decide(0, 4, since_change=POLICY.cooldown)

    assert (early.count, early.reason) == (4, "cooling down")
    assert later.count == LIMITS.min_tasks


def test_scale_out_ignores_the_cooldown() -> None:
    assert _decide(200, 1, since_change=0.0).count == 4


def test_limits_refuse_min_above_max() -> None:
    with pytest.raises(ValueError, match="bad limits"):
        Limits(3, 2)


class _FixedBackend(Backend):
    """A backend whose services run the counts it was given, and that records each scale."""

    def __init__(self, desired: dict[str, int]) -> None:
        self.desired = dict(desired)

    async def status(self) -> list[ServiceState]:
        return [ServiceState(name=name, desired=count) for name, count in self.desired.items()]

    async def scale(self, service: str, count: int) -> ServiceState:
        self.desired[service] = count
        return ServiceState(name=service, desired=count)

    async def release(self, service: str) -> ServiceState:
        return await self.state(service)

    async def close(self) -> None:
        return None


async def test_held_backlog_counts_with_the_queues(amqp_url: str, database_url: str) -> None:
    # No queue of these services exists in the test's vhost: all backlog is held.
    backend = _FixedBackend({"held": 1, "broken": 2})
    limits = {"held": LIMITS, "broken": LIMITS}
    queries = {"held": "SELECT 60", "broken": "SELECT items FROM nowhere.backlog"}
    scaler = Autoscaler(
        backend,
        limits,
        os.environ.get("WHARF_TEST_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL),
        vhost=vhost_of(amqp_url),
        policy=POLICY,
        database_url=database_url,
        backlog_queries=queries,
    )

    decisions = await scaler.step()

    # 60 items at the default 2/s a task, to drain within 10 s: 3 tasks.
    assert decisions["held"].count == 3
    assert decisions["held"].reason.startswith("backlog 60")
    # A query that fails leaves its service as it is rather than scale it in.
    assert "broken" not in decisions
    assert backend.desired == {"held": 3, "broken": 2}


@pytest.fixture
async def sample_stack(
    amqp_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Supervisor, LocalBackend]]:
    """The sample service (common/tests) as a one-task local stack with its control API."""
    spec = ServiceSpec("sample", command=(sys.executable, "-m", "sample_service"))
    env = {
        **os.environ,
        "PYTHONPATH": str(SAMPLE),
        "WHARF_AMQP_URL": amqp_url,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_HTTP_HOST": "127.0.0.1",
        "WHARF_STORAGE_URL": f"file://{tmp_path}/objects",
        "WHARF_LOG_TO_BUS": "false",
        "WHARF_PREFETCH": "2",
        "WHARF_CONCURRENCY": "2",
        "WHARF_STOP_TIMEOUT": "10",
    }
    home = Home(tmp_path / "wharf")
    options = SupervisorOptions(stop_timeout=10.0, probe_interval=0.2, backoff_base=0.2)
    supervisor = Supervisor([spec], home, env=env, cwd=SAMPLE, options=options)
    stop = asyncio.Event()
    server = ControlServer(supervisor, home, stop)
    await server.start()
    await supervisor.start()
    backend = LocalBackend(home)
    try:
        async with asyncio.timeout(60):
            await supervisor.wait_settled()
        yield supervisor, backend
    finally:
        await backend.close()
        await supervisor.stop()
        await server.close()


async def _effects(database_url: str) -> list[int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT n FROM sample.effects ORDER BY n")
    finally:
        await connection.close()
    return [row["n"] for row in rows]


async def _wait_for(check: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_backlog_scales_out_and_scale_in_loses_no_job(
    sample_stack: tuple[Supervisor, LocalBackend], amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    supervisor, backend = sample_stack
    home = Home(tmp_path / "wharf")
    management = os.environ.get("WHARF_TEST_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL)
    policy = Policy(target_seconds=2.0, cooldown=0.0, default_rate=1.0 / JOB_SECONDS)
    scaler = Autoscaler(
        backend, {"sample": Limits(1, 3)}, management, vhost=vhost_of(amqp_url), policy=policy
    )
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    try:
        for n in range(JOBS):
            await bus.send(QUEUE, Envelope(type="sample.job", body={"n": n, "sleep": JOB_SECONDS}))
    finally:
        await bus.close()

    async def scaled_out() -> bool:
        decisions = await scaler.step()
        return decisions["sample"].count == 3

    await _wait_for(scaled_out, 30)
    async with asyncio.timeout(60):
        await supervisor.wait_settled()
    grown = supervisor.desired()["sample"]
    # Scale in while the backlog is still there: the two newest tasks drain mid-work.
    done_before = len(await _effects(database_url))
    state = await backend.scale("sample", 1)

    async def all_done() -> bool:
        return len(await _effects(database_url)) >= JOBS

    await _wait_for(all_done, 120)
    await asyncio.sleep(1.0)
    effects = await _effects(database_url)

    async def scaled_in() -> bool:
        return (await scaler.step())["sample"].count == 1

    await _wait_for(scaled_in, 30)
    async with asyncio.timeout(30):
        await supervisor.wait_settled()
    drained = [(home.logs / f"sample-{slot}.log").read_text() for slot in (2, 3)]

    assert grown == 3
    assert done_before < JOBS
    assert state.desired == 1
    assert effects == list(range(JOBS))
    assert len((await backend.state("sample")).tasks) == 1
    for log in drained:
        assert "draining in-flight work" in log and "sample stopped" in log
