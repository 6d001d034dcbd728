from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wharf_auth import admin
from wharf_auth.app import spec as auth_spec
from wharf_auth.settings import AuthSettings
from wharf_carrier_ingest.app import spec as ingest_spec
from wharf_carrier_ingest.settings import CarrierIngestSettings, FtpServer
from wharf_common.testing import StartService
from wharf_documents.app import spec as documents_spec
from wharf_documents.settings import DocumentsSettings
from wharf_gateway.app import spec as gateway_spec
from wharf_gateway.routes import table
from wharf_gateway.settings import GatewaySettings
from wharf_log_sink.__main__ import spec as log_sink_spec
from wharf_log_sink.settings import LogSinkSettings
from wharf_webhooks.app import spec as webhooks_spec
from wharf_webhooks.settings import WebhookSettings

PASSWORD = "correct horse battery staple"
# Carrier documents jobs for dhl are accepted; nothing listens there, so each shipment
# ends up missing.
_FTP = {"dhl": FtpServer(host="127.0.0.1", port=9, timeout=2.0)}
# Every scope a route of the public API asks for.
ALL_SCOPES = sorted({scope for route in table({}) for scope in route.scopes})


@dataclass
class Tenant:
    """A tenant made through the gateway: its admin's token and an API key with every scope."""

    id: str
    email: str
    token: str
    api_key: str
    api_key_id: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def key(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


@dataclass
class Platform:
    """Every service running in this process on the test's own vhost, database and folder."""

    url: str
    http: aiohttp.ClientSession
    auth_settings: AuthSettings

    async def tenant(self, email: str) -> Tenant:
        body = {"name": email, "admin_email": email, "admin_password": PASSWORD}
        async with self.http.post(f"{self.url}/v1/tenants", json=body) as response:
            assert response.status == 201, await response.text()
            tenant_id = (await response.json())["tenant_id"]
        token = await self.login(email)
        key = {"name": "everything", "scopes": ALL_SCOPES}
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.post(f"{self.url}/v1/api-keys", json=key, headers=headers) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
        return Tenant(tenant_id, email, token, created["key"], created["id"])

    async def request(
        self, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> tuple[int, Any]:
        """The status and JSON answer of one call through the gateway."""
        async with self.http.request(
            method, f"{self.url}{path}", headers=headers, **kwargs
        ) as response:
            return response.status, await response.json(content_type=None)

    async def login(self, email: str) -> str:
        login = {"email": email, "password": PASSWORD}
        async with self.http.post(f"{self.url}/v1/auth/token", json=login) as response:
            assert response.status == 200, await response.text()
            token: str = (await response.json())["access_token"]
        return token

    async def operator(self, email: str) -> str:
        """An access token with the ops role, granted as `wharf_auth grant-ops` does."""
        await self.tenant(email)
        await admin.grant_ops(self.auth_settings.database_url, email)
        return await self.login(email)


@pytest.fixture
async def platform(
    amqp_url: str,
    database_url: str,
    redis_prefix: str,
    tmp_path: Path,
    start_service: StartService,
) -> AsyncIterator[Platform]:
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "storage_url": f"file://{tmp_path}/objects",
        "log_to_bus": False,
        "stop_timeout": 2.0,
    }
    auth = AuthSettings(
        **common,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        throttle_address_free=100_000,
    )
    gateway = GatewaySettings(
        **common,
        rate_limit_prefix=redis_prefix,
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        anonymous_per_second=100_000,
        anonymous_burst=100_000,
        api_key_cache_seconds=0.2,
        jwks_min_refetch=0.0,
        home=tmp_path / "wharf",
    )
    await start_service(auth_spec(), auth)
    running = await start_service(gateway_spec(), gateway)
    await asyncio.gather(
        start_service(documents_spec(), DocumentsSettings(**common, render_workers=1)),
        start_service(ingest_spec(), CarrierIngestSettings(**common, carrier_ftp=_FTP)),
        start_service(log_sink_spec(), LogSinkSettings(**common)),
        start_service(
            webhooks_spec(), WebhookSettings(**common, webhook_allowed_hosts=["127.0.0.1"])
        ),
    )
    async with aiohttp.ClientSession() as http:
        yield Platform(running.url, http, auth)
