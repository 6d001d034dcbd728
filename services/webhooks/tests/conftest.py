from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_webhooks.app import RPC_QUEUE
from wharf_webhooks.app import spec as webhooks_spec
from wharf_webhooks.settings import WebhookSettings


@pytest.fixture
def webhook_settings(amqp_url: str, database_url: str, tmp_path: Path) -> WebhookSettings:
    return WebhookSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"file://{tmp_path}/objects",
        log_to_bus=False,
        stop_timeout=2.0,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_timeout=2.0,
        webhook_endpoint_concurrency=2,
        webhook_workers=8,
        webhook_retry_base=0.1,
        webhook_retry_max=0.5,
        webhook_retry_for=30.0,
        webhook_poll_interval=0.1,
    )


StartWebhooks = Callable[..., Awaitable[Any]]


@pytest.fixture
def start_webhooks(webhook_settings: WebhookSettings, start_service: Any) -> StartWebhooks:
    """Start a webhooks task; keyword arguments override its settings."""

    async def start(**changes: Any) -> Any:
        return await start_service(webhooks_spec(), webhook_settings.model_copy(update=changes))

    return start


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    yield bus
    await bus.close()


Rpc = Callable[..., Awaitable[Any]]


@pytest.fixture
def rpc(bus: Bus) -> Rpc:
    """Call a webhook operation as the gateway does, for `tenant`."""

    async def call(operation: str, tenant: str, **data: Any) -> Any:
        envelope = Envelope(type=f"webhooks.{operation}", tenant=tenant, body={"data": data})
        return await bus.call(RPC_QUEUE, envelope, timeout=10)

    return call


Serve = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start receivers on 127.0.0.1; each call returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()
