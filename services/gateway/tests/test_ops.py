"""The ops API's task counts, through the local backend to a supervisor of fake services."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wharf_auth import admin
from wharf_auth.settings import AuthSettings
from wharf_cli.home import Home
from wharf_cli.local import ControlServer
from wharf_cli.services import ServiceSpec
from wharf_cli.supervisor import Supervisor, SupervisorOptions

FAKE_SERVICE = Path(__file__).resolve().parents[3] / "cli" / "tests" / "fake_service.py"
PASSWORD = "correct horse battery staple"
FAST = SupervisorOptions(stop_timeout=5.0, probe_interval=0.1, backoff_base=0.1, kill_grace=0.5)


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    """A local stack of fake documents and log-sink tasks at the gateway's WHARF_HOME."""
    command = (sys.executable, str(FAKE_SERVICE))
    specs = [ServiceSpec("documents", command=command), ServiceSpec("log-sink", command=command)]
    home = Home(tmp_path / "wharf")
    supervisor = Supervisor(specs, home, options=FAST)
    server = ControlServer(supervisor, home, asyncio.Event())
    await server.start()
    await supervisor.start()
    async with asyncio.timeout(15):
        await supervisor.wait_settled()
    yield supervisor
    await supervisor.stop()
    await server.close()


async def _token(http: aiohttp.ClientSession, url: str, email: str) -> dict[str, str]:
    login = {"email": email, "password": PASSWORD}
    async with http.post(f"{url}/v1/auth/token", json=login) as response:
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def test_ops_list_and_set_task_counts(
    gateway: Any,
    http: aiohttp.ClientSession,
    signup: Callable[..., Awaitable[dict[str, Any]]],
    auth_settings: AuthSettings,
    supervisor: Supervisor,
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    ops = await _token(http, gateway.url, tenant["email"])
    services = f"{gateway.url}/v1/ops/services"

    async with http.get(services, headers=ops) as response:
        listed = await response.json()
    async with http.put(f"{services}/documents/tasks", json={"count": 2}, headers=ops) as response:
        scaled = (response.status, await response.json())
    async with http.put(f"{services}/nope/tasks", json={"count": 1}, headers=ops) as response:
        unknown = response.status
    async with http.put(f"{services}/documents/tasks", json={"count": -1}, headers=ops) as response:
        negative = response.status

    assert listed["backend"] == "local"
    assert [(s["name"], s["desired"], s["ready"]) for s in listed["services"]] == [
        ("documents", 1, 1),
        ("log-sink", 1, 1),
    ]
    assert [s["queue_depth"] for s in listed["services"]] == [0, 0]
    assert scaled[0] == 200 and scaled[1]["desired"] == 2
    assert scaled[1]["queue_depth"] == 0
    assert supervisor.desired()["documents"] == 2
    assert (unknown, negative) == (404, 422)


async def test_ops_task_counts_stay_in_each_service_range(
    gateway: Any,
    http: aiohttp.ClientSession,
    signup: Callable[..., Awaitable[dict[str, Any]]],
    auth_settings: AuthSettings,
    supervisor: Supervisor,
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    ops = await _token(http, gateway.url, tenant["email"])
    services = f"{gateway.url}/v1/ops/services"
    answers = []

    for name, count in [("documents", 9), ("documents", 0), ("gateway", 0), ("log-sink", 1001)]:
        body = {"count": count}
        async with http.put(f"{services}/{name}/tasks", json=body, headers=ops) as response:
            assert response.content_type == "application/problem+json"
            answers.append((response.status, await response.json()))

    assert [status for status, _ in answers] == [422] * 4
    assert answers[0][1]["detail"] == "documents runs 1 to 8 tasks, not 9"
    assert (answers[0][1]["min_tasks"], answers[0][1]["max_tasks"]) == (1, 8)
    assert answers[2][1]["detail"] == "gateway runs 1 to 1000 tasks, not 0"
    assert supervisor.desired()["documents"] == 1


async def test_ops_never_scale_the_gateway_to_zero(
    start_gateway: Any,
    http: aiohttp.ClientSession,
    signup: Callable[..., Awaitable[dict[str, Any]]],
    auth_settings: AuthSettings,
    tmp_path: Path,
) -> None:
    table = tmp_path / "services.toml"
    table.write_text(
        '[[service]]\nname = "gateway"\nmin_tasks = 0\n\n'
        '[[service]]\nname = "documents"\nmin_tasks = 0\nmax_tasks = 2\n'
    )
    gateway = await start_gateway(services_file=table)
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    ops = await _token(http, gateway.url, tenant["email"])
    services = f"{gateway.url}/v1/ops/services"

    async with http.put(f"{services}/gateway/tasks", json={"count": 0}, headers=ops) as response:
        refused = (response.status, await response.json())
    async with http.put(f"{services}/documents/tasks", json={"count": 0}, headers=ops) as response:
        # In range, so it goes on to the backend, and no stack runs here.
        passed = response.status

    assert refused[0] == 422
    assert (refused[1]["min_tasks"], refused[1]["max_tasks"]) == (1, 1000)
    assert passed == 503


async def test_ops_routes_need_the_ops_role(
    gateway: Any, http: aiohttp.ClientSession, signup: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    tenant = await signup()
    headers = {"Authorization": f"Bearer {tenant['access_token']}"}

    async with http.get(f"{gateway.url}/v1/ops/services", headers=headers) as response:
        assert response.status == 403


async def test_ops_answers_503_without_a_stack(
    gateway: Any,
    http: aiohttp.ClientSession,
    signup: Callable[..., Awaitable[dict[str, Any]]],
    auth_settings: AuthSettings,
) -> None:
    tenant = await signup()
    await admin.grant_ops(auth_settings.database_url, tenant["email"])
    ops = await _token(http, gateway.url, tenant["email"])

    async with http.get(f"{gateway.url}/v1/ops/services", headers=ops) as response:
        assert response.status == 503
        assert "no Wharf stack is running" in (await response.json())["detail"]
