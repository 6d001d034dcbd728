from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from wharf_auth.app import spec as auth_spec
from wharf_auth.settings import AuthSettings
from wharf_carrier_ingest.app import spec as ingest_spec
from wharf_carrier_ingest.ingest import PAYLOADS_QUEUE
from wharf_carrier_ingest.settings import CarrierIngestSettings
from wharf_common.bus import command_queue_arguments
from wharf_common.consumer import Consumer
from wharf_common.testing import Running, StartService
from wharf_gateway.app import spec as gateway_spec
from wharf_gateway.settings import GatewaySettings

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_bytes() -> Callable[[str], bytes]:
    """Read one of the project's own carrier fixtures."""

    def read(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return read


PASSWORD = "correct horse battery staple"


@dataclass
class Tenant:
    """A tenant made through the gateway, with the credentials its tests use."""

    id: str
    token: str
    carrier_key: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def carrier(self) -> dict[str, str]:
        return {"X-API-Key": self.carrier_key}


@dataclass
class Stack:
    """Auth, gateway and carrier-ingest running in this process over one bus and store."""

    gateway: Running
    ingest: Running
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.gateway.url

    async def tenant(self, email: str) -> Tenant:
        body = {"name": email, "admin_email": email, "admin_password": PASSWORD}
        async with self.http.post(f"{self.url}/v1/tenants", json=body) as response:
            assert response.status == 201, await response.text()
            tenant_id = (await response.json())["tenant_id"]
        login = {"email": email, "password": PASSWORD}
        async with self.http.post(f"{self.url}/v1/auth/token", json=login) as response:
            token = (await response.json())["access_token"]
        key = {"name": "carrier", "scopes": ["carrier:ingest"]}
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.post(f"{self.url}/v1/api-keys", json=key, headers=headers) as r:
            assert r.status == 201, await r.text()
            carrier_key = (await r.json())["key"]
        return Tenant(tenant_id, token, carrier_key)

    async def post_payload(
        self,
        tenant: Tenant,
        carrier: str,
        payload: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        async with self.http.post(
            f"{self.url}/v1/carriers/{carrier}/events",
            data=payload,
            headers={**tenant.carrier, "Content-Type": content_type, **(headers or {})},
        ) as response:
            await response.read()
            return response

    async def get(self, tenant: Tenant, path: str, **params: str) -> Any:
        async with self.http.get(
            f"{self.url}{path}", params=params, headers=tenant.bearer
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def settled(self) -> None:
        """Wait until every payload sent so far has been handled and its outbox relayed."""
        bus = self.ingest.runtime.bus
        pool = self.ingest.runtime.db
        for _ in range(200):
            queue = await bus.publish_channel.declare_queue(
                PAYLOADS_QUEUE, durable=True, arguments=command_queue_arguments()
            )
            busy = queue.declaration_result.message_count
            outbox = await pool.fetchval("SELECT count(*) FROM carrier_ingest.outbox")
            consumers = [
                w for w in self.ingest.runtime._workers if isinstance(w, Consumer) and w.in_flight
            ]
            if not busy and not outbox and not consumers:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("carrier-ingest did not settle")


@pytest.fixture
def storage_url(s3_url: str) -> str:
    """The object store the gateway and carrier-ingest share."""
    return s3_url


@pytest.fixture
def ingest_settings(amqp_url: str, database_url: str, storage_url: str) -> CarrierIngestSettings:
    return CarrierIngestSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=storage_url,
        log_to_bus=False,
        stop_timeout=2.0,
        retry_base_delay=0.05,
        max_attempts=2,
        outbox_poll_interval=0.05,
    )


@pytest.fixture
async def stack(
    amqp_url: str,
    database_url: str,
    storage_url: str,
    redis_prefix: str,
    ingest_settings: CarrierIngestSettings,
    start_service: StartService,
) -> AsyncIterator[Stack]:
    auth_settings = AuthSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        log_to_bus=False,
        stop_timeout=2.0,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        throttle_address_free=1000,
    )
    gateway_settings = GatewaySettings(
        amqp_url=amqp_url,
        storage_url=storage_url,
        log_to_bus=False,
        stop_timeout=2.0,
        rate_limit_prefix=redis_prefix,
        rate_limit_per_second=10_000,
        rate_limit_burst=10_000,
        anonymous_per_second=10_000,
        anonymous_burst=10_000,
        carrier_signing_secrets={"dhl_unified": SecretStr("dhl-secret")},
    )
    await start_service(auth_spec(), auth_settings)
    gateway = await start_service(gateway_spec(), gateway_settings)
    ingest = await start_service(ingest_spec(), ingest_settings)
    async with aiohttp.ClientSession() as http:
        yield Stack(gateway, ingest, http)
