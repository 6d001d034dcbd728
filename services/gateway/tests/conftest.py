from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wharf_auth.app import spec as auth_spec
from wharf_auth.settings import AuthSettings
from wharf_gateway.app import spec as gateway_spec
from wharf_gateway.settings import GatewaySettings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def auth_settings(amqp_url: str, database_url: str) -> AuthSettings:
    return AuthSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        log_to_bus=False,
        stop_timeout=2.0,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        throttle_account_free=3,
        throttle_address_free=100,
    )


@pytest.fixture
def gateway_settings(amqp_url: str, redis_prefix: str, tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(
        amqp_url=amqp_url,
        storage_url=f"file://{tmp_path}/objects",
        log_to_bus=False,
        stop_timeout=2.0,
        rate_limit_prefix=redis_prefix,
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        anonymous_per_second=1000,
        anonymous_burst=1000,
        api_key_cache_seconds=0.2,
        jwks_min_refetch=0.0,
        home=tmp_path / "wharf",
    )


@pytest.fixture
async def auth(auth_settings: AuthSettings, start_service: Any) -> Any:
    return await start_service(auth_spec(), auth_settings)


GatewayFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
def start_gateway(gateway_settings: GatewaySettings, start_service: Any) -> GatewayFactory:
    """Start a gateway task; keyword arguments override its settings."""

    async def start(**changes: Any) -> Any:
        settings = gateway_settings.model_copy(update=changes)
        return await start_service(gateway_spec(), settings)

    return start


@pytest.fixture
async def gateway(auth: Any, start_gateway: GatewayFactory) -> Any:
    return await start_gateway()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def signup(gateway: Any, http: aiohttp.ClientSession) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Create a tenant through the gateway and log its admin in."""

    async def make(email: str = "admin@example.com") -> dict[str, Any]:
        body = {"name": "Acme", "admin_email": email, "admin_password": PASSWORD}
        async with http.post(f"{gateway.url}/v1/tenants", json=body) as response:
            assert response.status == 201, await response.text()
            tenant = await response.json()
        login = {"email": email, "password": PASSWORD}
        async with http.post(f"{gateway.url}/v1/auth/token", json=login) as response:
            assert response.status == 200, await response.text()
            tokens = await response.json()
        return {**tenant, **tokens, "email": email}

    return make
