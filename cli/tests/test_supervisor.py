"""The local supervisor, over fake services: start, scale, restart, drain, stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import cast

import aiohttp
import pytest

from wharf_cli.backend import ServiceState
from wharf_cli.home import Home
from wharf_cli.services import ServiceSpec
from wharf_cli.supervisor import Supervisor, SupervisorOptions

MakeSupervisor = Callable[..., Supervisor]
FakeSpec = Callable[..., ServiceSpec]


def _state(supervisor: Supervisor, name: str) -> ServiceState:
    return next(state for state in supervisor.status() if state.name == name)


def _stopped_exits(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    exits: dict[str, int] = {}
    for record in caplog.records:
        if record.msg == "%s: stopped, exit code %d":
            name, code = cast(tuple[str, int], record.args)
            exits[name] = code
    return exits


async def test_up_brings_every_task_ready(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec, home: Home
) -> None:
    specs = [fake_spec("front", shared=True), fake_spec("back", default_tasks=2)]
    supervisor = make_supervisor(specs)

    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    front, back = supervisor.status()
    assert (front.desired, front.running, front.ready) == (1, 1, 1)
    assert (back.desired, back.running, back.ready) == (2, 2, 2)
    tasks = front.tasks + back.tasks
    assert [task.name for task in tasks] == ["front-1", "back-1", "back-2"]
    assert len({task.ops_port for task in tasks}) == 3
    assert front.tasks[0].http_port is None
    assert len({task.http_port for task in back.tasks}) == 2
    assert all(home.task_log(task.name).exists() for task in tasks)


async def test_only_tasks_of_a_shared_port_bind_it_with_reuse_port(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec, home: Home
) -> None:
    specs = [fake_spec("front", shared=True), fake_spec("back")]
    supervisor = make_supervisor(specs, env={**os.environ, "WHARF_HTTP_REUSE_PORT": "true"})

    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    assert "reuse port true" in home.task_log("front-1").read_text()
    assert "reuse port false" in home.task_log("back-1").read_text()


async def test_each_task_serves_its_own_ops_port(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec
) -> None:
    supervisor = make_supervisor([fake_spec("back", default_tasks=2)])
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    async with aiohttp.ClientSession() as session:
        for task in _state(supervisor, "back").tasks:
            for path in ("/healthz", "/readyz", "/metrics"):
                async with session.get(f"http://127.0.0.1:{task.ops_port}{path}") as response:
                    assert response.status == 200


async def test_counts_override_the_defaults(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec
) -> None:
    specs = [fake_spec("front"), fake_spec("back")]
    supervisor = make_supervisor(specs, counts={"front": 2, "back": 0})

    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    assert supervisor.desired() == {"front": 2, "back": 0}
    assert [state.ready for state in supervisor.status()] == [2, 0]


async def test_scale_up_starts_new_tasks(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec
) -> None:
    supervisor = make_supervisor([fake_spec("back", default_tasks=2)])
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()
    first_pids = [task.pid for task in _state(supervisor, "back").tasks]

    supervisor.set_desired("back", 4)
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    state = _state(supervisor, "back")
    assert (state.desired, state.running, state.ready) == (4, 4, 4)
    assert [task.name for task in state.tasks] == ["back-1", "back-2", "back-3", "back-4"]
    assert [task.pid for task in state.tasks[:2]] == first_pids
    assert all(task.restarts == 0 for task in state.tasks)


async def test_scale_down_drains_newest_tasks_which_exit_0(
    make_supervisor: MakeSupervisor,
    fake_spec: FakeSpec,
    home: Home,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wharf_cli")
    env = dict(os.environ, FAKE_DRAIN="0.5")
    supervisor = make_supervisor([fake_spec("back", default_tasks=3)], env=env)
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    supervisor.set_desired("back", 1)
    async with asyncio.timeout(15):
        await supervisor.wait_for(lambda: _state(supervisor, "back").running == 1)
    draining = _state(supervisor, "back")
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    assert [task.name for task in draining.tasks if task.phase == "stopping"] == [
        "back-2",
        "back-3",
    ]
    state = _state(supervisor, "back")
    assert [task.name for task in state.tasks] == ["back-1"]
    assert _stopped_exits(caplog) == {"back-2": 0, "back-3": 0}
    assert "drained" in home.task_log("back-3").read_text()


async def test_scale_refuses_unknown_service_and_negative_count(
    make_supervisor: MakeSupervisor,
    fake_spec: FakeSpec,
) -> None:
    supervisor = make_supervisor([fake_spec("back")])

    with pytest.raises(ValueError, match="unknown service 'nope'"):
        supervisor.set_desired("nope", 1)
    with pytest.raises(ValueError, match="0 or more"):
        supervisor.set_desired("back", -1)


async def test_killed_task_is_restarted(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec
) -> None:
    supervisor = make_supervisor([fake_spec("back")])
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()
    pid = _state(supervisor, "back").tasks[0].pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(15):
        await supervisor.wait_for(lambda: _state(supervisor, "back").tasks[0].restarts == 1)
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    task = _state(supervisor, "back").tasks[0]
    assert task.name == "back-1"
    assert task.ready
    assert task.pid not in (None, pid)
    assert task.exit_code == -signal.SIGKILL


async def test_crashing_task_keeps_being_restarted_with_back_off(
    make_supervisor: MakeSupervisor, home: Home
) -> None:
    spec = ServiceSpec("broken", command=(sys.executable, "-c", "raise SystemExit(3)"))
    options = SupervisorOptions(probe_interval=0.05, backoff_base=0.2, backoff_max=0.4)
    supervisor = make_supervisor([spec], options=options)

    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_for(
            lambda: any(task.restarts >= 3 for task in _state(supervisor, "broken").tasks)
        )

    task = _state(supervisor, "broken").tasks[0]
    assert task.exit_code == 3
    assert not task.ready
    assert home.task_log("broken-1").read_text().count("--- wharf: broken-1 starting") >= 4


async def test_task_ignoring_sigterm_is_killed_after_its_stop_timeout(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wharf_cli")
    env = dict(os.environ, FAKE_IGNORE_SIGTERM="1")
    options = SupervisorOptions(
        stop_timeout=0.5, probe_interval=0.1, backoff_base=0.1, kill_grace=0.2
    )
    supervisor = make_supervisor([fake_spec("stubborn")], env=env, options=options)
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()

    async with asyncio.timeout(10):
        await supervisor.stop()

    assert supervisor.status()[0].tasks == []
    assert _stopped_exits(caplog) == {"stubborn-1": -signal.SIGKILL}


async def test_stop_drains_every_task(
    make_supervisor: MakeSupervisor, fake_spec: FakeSpec, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wharf_cli")
    specs = [fake_spec("front", shared=True), fake_spec("back", default_tasks=2)]
    supervisor = make_supervisor(specs)
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()
    pids = [task.pid for state in supervisor.status() for task in state.tasks]

    async with asyncio.timeout(10):
        await supervisor.stop()

    assert all(not state.tasks for state in supervisor.status())
    with pytest.raises(ValueError, match="stopping"):
        supervisor.set_desired("back", 1)
    assert _stopped_exits(caplog) == {"front-1": 0, "back-1": 0, "back-2": 0}
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
