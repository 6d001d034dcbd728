from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from wharf_auth.app import spec
from wharf_auth.settings import AuthSettings
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope

QUEUE = "wharf.auth.rpc"


@pytest.fixture
def auth_settings(amqp_url: str, database_url: str, tmp_path: Any) -> AuthSettings:
    return AuthSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        log_to_bus=False,
        stop_timeout=2.0,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        throttle_account_free=3,
        throttle_address_free=50,
    )


@pytest.fixture
async def auth(auth_settings: AuthSettings, start_service: Any) -> Any:
    return await start_service(spec(), auth_settings)


@pytest.fixture
async def client(auth: Any, amqp_url: str) -> AsyncIterator[Any]:
    """Calls auth over the bus, as the gateway does."""
    bus = Bus(amqp_url, service="test-client")
    await bus.connect()

    async def call(type: str, data: dict[str, Any], **extra: Any) -> Any:
        envelope = Envelope(type=type, body={"data": data, **extra})
        caller = extra.get("caller")
        if caller is not None:
            envelope.tenant = caller["tenant"]
        return await bus.call(QUEUE, envelope, timeout=10)

    yield call
    await bus.close()
