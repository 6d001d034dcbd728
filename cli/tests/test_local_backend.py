"""The supervisor's control API and LocalBackend, its client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wharf_cli.backend import BackendError
from wharf_cli.home import Home
from wharf_cli.local import ControlServer, LocalBackend, NotRunningError, read_info
from wharf_cli.services import ServiceSpec
from wharf_cli.supervisor import Supervisor


@pytest.fixture
async def stack(
    make_supervisor: Callable[..., Supervisor],
    fake_spec: Callable[..., ServiceSpec],
    home: Home,
) -> AsyncIterator[tuple[Supervisor, asyncio.Event]]:
    """A running supervisor of two fake services, with its control API."""
    supervisor = make_supervisor([fake_spec("front", shared=True), fake_spec("back")])
    stop = asyncio.Event()
    server = ControlServer(supervisor, home, stop)
    await server.start()
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()
    yield supervisor, stop
    await server.close()


async def test_status_reports_desired_running_and_ready(
    stack: tuple[Supervisor, asyncio.Event], home: Home
) -> None:
    backend = LocalBackend(home)
    try:
        states = await backend.status()
    finally:
        await backend.close()

    summary = [(s.name, s.desired, s.running, s.ready) for s in states]
    assert summary == [("front", 1, 1, 1), ("back", 1, 1, 1)]
    assert states[1].tasks[0].pid is not None


async def test_scale_through_the_control_api(
    stack: tuple[Supervisor, asyncio.Event], home: Home
) -> None:
    supervisor, _ = stack
    backend = LocalBackend(home)
    try:
        answer = await backend.scale("back", 2)
        async with asyncio.timeout(15):
            await supervisor.wait_settled()
        states = await backend.status()
    finally:
        await backend.close()

    assert answer.desired == 2
    assert [(s.name, s.running, s.ready) for s in states] == [("front", 1, 1), ("back", 2, 2)]


async def test_scale_of_unknown_service_is_refused(
    stack: tuple[Supervisor, asyncio.Event], home: Home
) -> None:
    backend = LocalBackend(home)
    try:
        with pytest.raises(BackendError, match="unknown service 'nope'"):
            await backend.scale("nope", 1)
    finally:
        await backend.close()


async def test_stop_request_sets_the_stop_event(
    stack: tuple[Supervisor, asyncio.Event], home: Home
) -> None:
    _, stop = stack
    backend = LocalBackend(home)
    try:
        await backend.stop()
    finally:
        await backend.close()

    assert stop.is_set()


async def test_record_names_the_supervisor(
    stack: tuple[Supervisor, asyncio.Event], home: Home
) -> None:
    info = read_info(home)

    assert info is not None
    assert info.address == f"unix:{home.control_socket}"


async def test_long_home_path_falls_back_to_tcp(
    make_supervisor: Callable[..., Supervisor],
    fake_spec: Callable[..., ServiceSpec],
    tmp_path: Path,
) -> None:
    home = Home(tmp_path / ("x" * 120))
    home.create()
    supervisor = Supervisor([fake_spec("back")], home, counts={"back": 0})
    server = ControlServer(supervisor, home, asyncio.Event())
    address = await server.start()
    backend = LocalBackend(home)
    try:
        states = await backend.status()
    finally:
        await backend.close()
        await server.close()

    assert address.startswith("http://127.0.0.1:")
    assert [state.name for state in states] == ["back"]
    assert read_info(home) is None


async def test_no_supervisor_is_reported_as_not_running(home: Home) -> None:
    backend = LocalBackend(home)
    try:
        assert not await backend.running()
        with pytest.raises(NotRunningError, match="no Wharf stack is running"):
            await backend.status()
    finally:
        await backend.close()
