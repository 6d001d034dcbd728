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
    assert scaled[0] == 200 and scaled[1]["desired"] == 2
    assert supervisor.desired()["documents"] == 2
    assert (unknown, negative) == (404, 422)


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
