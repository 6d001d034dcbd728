from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from wharf_webhooks.app import spec as webhooks_spec
from wharf_webhooks.settings import WebhookSettings

Signup = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def webhooks(amqp_url: str, database_url: str, tmp_path: Any, start_service: Any) -> Any:
    settings = WebhookSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"file://{tmp_path}/webhook-objects",
        log_to_bus=False,
        stop_timeout=2.0,
        webhook_allowed_hosts=["127.0.0.1"],
    )
    return await start_service(webhooks_spec(), settings)


async def test_webhook_routes_act_for_the_credentials_tenant_only(
    webhooks: Any, gateway: Any, signup: Signup, http: aiohttp.ClientSession
) -> None:
    a = await signup("a@example.com")
    b = await signup("b@example.com")
    as_a = {"Authorization": f"Bearer {a['access_token']}"}
    as_b = {"Authorization": f"Bearer {b['access_token']}"}
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["document.rendered"]}

    async with http.post(f"{gateway.url}/v1/webhooks", json=body, headers=as_a) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    assert created["secret"].startswith("whsec_")

    async with http.get(f"{gateway.url}/v1/webhooks", headers=as_b) as response:
        assert (await response.json())["items"] == []
    hook = f"{gateway.url}/v1/webhooks/{created['id']}"
    async with http.get(f"{hook}/deliveries", headers=as_b) as response:
        assert response.status == 404
    async with http.delete(hook, headers=as_b) as response:
        assert response.status == 404
    async with http.get(f"{gateway.url}/v1/webhooks", headers=as_a) as response:
        assert [item["id"] for item in (await response.json())["items"]] == [created["id"]]
    internal = {**body, "url": "https://169.254.169.254/latest"}
    async with http.post(f"{gateway.url}/v1/webhooks", json=internal, headers=as_a) as response:
        assert response.status == 422
    async with http.delete(hook, headers=as_a) as response:
        assert response.status == 200
