"""Pytest fixtures for real RabbitMQ, PostgreSQL, Redis and S3, each test isolated.

Registered for the whole repository by the root ``conftest.py``. Every test
gets its own RabbitMQ virtual host (made through the management API), its
own database, its own Redis key prefix and its own bucket, all removed
afterwards. The servers come from ``WHARF_TEST_MANAGEMENT_URL``,
``WHARF_TEST_AMQP_HOST``, ``WHARF_TEST_DATABASE_URL`` and
``WHARF_TEST_REDIS_URL``; S3 is moto's standalone server on a free port.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
import botocore.session
import pytest
import pytest_asyncio
from aiohttp import web

from wharf_common import events
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import ServiceSettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"
DEFAULT_AMQP_HOST = "guest:guest@127.0.0.1:5672"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_REGION = "us-east-1"

_DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": TEST_REGION,
}
_AWS_OVERRIDES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


@pytest_asyncio.fixture
async def database_url() -> AsyncIterator[str]:
    """URL of a new, empty database that is dropped after the test."""
    server_url = os.environ.get("WHARF_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    name = _unique("wharf_test_")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of moto's S3 server, running with dummy credentials for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in _AWS_OVERRIDES:
                env.delenv(name, raising=False)
            for name, value in _DUMMY_AWS.items():
                env.setenv(name, value)
            yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _s3_admin(s3_server: str) -> Iterator[Any]:
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=s3_server, region_name=TEST_REGION
    )
    yield s3
    s3.close()


@pytest.fixture
def s3_url(s3_server: str, _s3_admin: Any) -> Iterator[str]:
    """Storage URL of a new bucket on the test S3 server; the bucket is removed after."""
    bucket = _unique("wharf-test-")
    query = urlencode({"endpoint_url": s3_server, "region": TEST_REGION, "create_bucket": "true"})
    yield f"s3://{bucket}?{query}"

    with contextlib.suppress(_s3_admin.exceptions.NoSuchBucket):
        listed = _s3_admin.list_objects_v2(Bucket=bucket)
        for item in listed.get("Contents", []):
            _s3_admin.delete_object(Bucket=bucket, Key=item["Key"])
        _s3_admin.delete_bucket(Bucket=bucket)


@pytest_asyncio.fixture
async def amqp_url() -> AsyncIterator[str]:
    """URL of a RabbitMQ virtual host of the test's own, deleted after the test."""
    vhost = quote(_unique("wharf-test-"), safe="")
    api = os.environ.get("WHARF_TEST_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL).rstrip("/") + "/api"
    host = os.environ.get("WHARF_TEST_AMQP_HOST", DEFAULT_AMQP_HOST)
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{api}/vhosts/{vhost}") as response:
            response.raise_for_status()
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        async with http.put(f"{api}/permissions/{vhost}/guest", json=permissions) as response:
            response.raise_for_status()
        try:
            yield f"amqp://{host}/{vhost}"
        finally:
            async with http.delete(f"{api}/vhosts/{vhost}"):
                pass


@pytest.fixture(autouse=True)
def published_events_match_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail a test whose code publishes an event its catalog model does not describe.

    Every `Bus.publish_event` in every test is checked, so the services'
    own tests prove that what they publish matches the catalog. Types under
    ``test.`` are exempt. The fixture yields the problems found so far; a test
    that publishes a bad event on purpose inspects and clears them.
    """
    problems: list[str] = []
    publish = Bus.publish_event

    async def checked(self: Bus, envelope: Envelope) -> None:
        if not envelope.type.startswith("test."):
            problems.extend(events.contract_problems(envelope))
        await publish(self, envelope)

    monkeypatch.setattr(Bus, "publish_event", checked)
    yield problems
    if problems:
        pytest.fail("published events do not match the catalog:\n" + "\n".join(problems))


@pytest_asyncio.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own in Redis; its keys are deleted after the test."""
    import redis.asyncio as redis

    prefix = f"wharf-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(os.environ.get("WHARF_TEST_REDIS_URL", DEFAULT_REDIS_URL))
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass
class Running:
    """A service started in this process: its runtime and its HTTP base URL."""

    runtime: Runtime
    url: str


StartService = Callable[[ServiceSpec, ServiceSettings], Awaitable[Running]]


@contextlib.asynccontextmanager
async def running(spec: ServiceSpec, settings: ServiceSettings) -> AsyncIterator[Running]:
    """Start `spec` in this process as the runtime would, on a free port; stop it after."""
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


@pytest_asyncio.fixture
async def start_service(amqp_url: str, database_url: str) -> AsyncIterator[StartService]:
    """Start services in-process for one test; all are stopped when it ends.

    It depends on the test's virtual host and database so that they outlive
    the services: stopping a service whose broker vanished would wait on
    reconnects.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(spec: ServiceSpec, settings: ServiceSettings) -> Running:
            return await stack.enter_async_context(running(spec, settings))

        yield start
