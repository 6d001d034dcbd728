"""The whole platform as a user runs it: `wharf up`, real processes, one stack."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.slow

SERVICES = {"gateway", "auth", "documents", "carrier-ingest", "log-sink", "webhooks"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """A `wharf up --detach` stack on the test's own vhost, database and folder."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.gateway = f"http://127.0.0.1:{env['WHARF_HTTP_PORT']}"

    def wharf(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wharf_cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        result = self.wharf("status", "--json")
        assert result.returncode == 0, result.stderr
        return {entry["name"]: entry for entry in json.loads(result.stdout)["services"]}


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    env = {
        **os.environ,
        "WHARF_HOME": str(tmp_path / "home"),
        "WHARF_AMQP_URL": amqp_url,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_STORAGE_URL": f"file://{tmp_path}/objects",
        "WHARF_HTTP_PORT": str(port),
        "WHARF_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "WHARF_RATE_LIMIT_PREFIX": f"wharf-test:{uuid.uuid4().hex[:12]}",
        "WHARF_STOP_TIMEOUT": "5",
        "WHARF_RENDER_WORKERS": "1",
        "WHARF_CARRIER_FTP": json.dumps(
            {
                "fedex": {
                    "host": "127.0.0.1",
                    "port": free_port(),
                    "user": "wharf-demo",
                    "password": "wharf-demo-ftp",
                }
            }
        ),
    }
    stack = Stack(env)
    up = stack.wharf("up", "--detach", timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield stack
    finally:
        down = stack.wharf("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr


async def search_logs(
    http: aiohttp.ClientSession, stack: Stack, token: str, correlation_id: str
) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        while True:
            async with http.get(
                f"{stack.gateway}/v1/logs",
                params={"correlation_id": correlation_id},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 200, await response.text()
                records: list[dict[str, Any]] = (await response.json())["records"]
            if {"gateway", "auth"} <= {record["service"] for record in records}:
                return records
            await asyncio.sleep(0.5)


async def test_up_runs_five_ready_services_that_serve_the_api(stack: Stack) -> None:
    services = stack.status()
    assert set(services) == SERVICES
    for name, entry in services.items():
        assert entry["running"] == entry["desired"] == 1, name
        assert entry["ready"] == 1, name

    request_id = uuid.uuid4().hex
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": email, "password": "a long enough password"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.gateway}/v1/tenants",
            json={
                "name": "Acme Freight",
                "admin_email": email,
                "admin_password": credentials["password"],
            },
            headers={"X-Request-ID": request_id},
        ) as response:
            assert response.status == 201, await response.text()
            assert response.headers["X-Request-ID"] == request_id

        grant = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "wharf_auth", "grant-ops", email],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert grant.returncode == 0, grant.stderr
        async with http.post(f"{stack.gateway}/v1/auth/token", json=credentials) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["access_token"]

        records = await search_logs(http, stack, token, request_id)
    assert {record["correlation_id"] for record in records} == {request_id}


async def test_scale_changes_the_running_count(stack: Stack) -> None:
    scaled = stack.wharf("scale", "auth", "2")
    assert scaled.returncode == 0, scaled.stderr

    async with asyncio.timeout(60):
        while stack.status()["auth"]["ready"] != 2:
            await asyncio.sleep(0.5)

    assert stack.wharf("scale", "auth", "1").returncode == 0
    async with asyncio.timeout(60):
        while stack.status()["auth"]["running"] != 1:
            await asyncio.sleep(0.5)


async def test_demo_runs_the_main_job_end_to_end(stack: Stack) -> None:
    result = await asyncio.to_thread(stack.wharf, "demo", timeout=400)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "delivered" in output
    assert " 0 dead-lettered" in output, output[-4000:]
    assert "/v1/objects/" in output or "http" in output
