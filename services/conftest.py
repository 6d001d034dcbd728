"""Fixtures shared by the services' tests: a RabbitMQ vhost, Redis, in-process services."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web

from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import ServiceSettings

MANAGEMENT_URL = os.environ.get("WHARF_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
AMQP_HOST = os.environ.get("WHARF_TEST_AMQP_HOST", "guest:guest@127.0.0.1:5672")
REDIS_URL = os.environ.get("WHARF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Running:
    """A service started in this process: its runtime and its HTTP base URL."""

    runtime: Runtime
    url: str


StartService = Callable[[ServiceSpec, ServiceSettings], Awaitable[Running]]


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    """A RabbitMQ virtual host of the test's own, deleted afterwards."""
    vhost = quote(f"wharf-test-{uuid.uuid4().hex[:12]}", safe="")
    api = f"{MANAGEMENT_URL.rstrip('/')}/api"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{api}/vhosts/{vhost}") as response:
            response.raise_for_status()
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        async with http.put(f"{api}/permissions/{vhost}/guest", json=permissions) as response:
            response.raise_for_status()
        try:
            yield f"amqp://{AMQP_HOST}/{vhost}"
        finally:
            async with http.delete(f"{api}/vhosts/{vhost}"):
                pass


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own in the shared Redis; its keys are deleted afterwards."""
    prefix = f"wharf-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def running(spec: ServiceSpec, settings: ServiceSettings) -> AsyncIterator[Running]:
    """Start `spec` as the runtime would, on a free local port, and stop it afterwards."""
    rt = Runtime(spec, settings)
    await spec.setup(rt)
    runner = web.AppRunner(rt.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await rt.connect()
        await rt.start_work()
        yield Running(rt, f"http://127.0.0.1:{port}")
    finally:
        rt.stopping.set()
        await rt.drain()
        await runner.cleanup()
        await rt.close()


@pytest.fixture
async def start_service() -> AsyncIterator[StartService]:
    """Start services in-process for one test; all are stopped when it ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(spec: ServiceSpec, settings: ServiceSettings) -> Running:
            return await stack.enter_async_context(running(spec, settings))

        yield start
