from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from wharf_auth import keys
from wharf_auth.app import spec
from wharf_auth.settings import AuthSettings
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.errors import StartupError
from wharf_common.testing import running

PASSWORD = "correct horse battery staple"


def with_keys(settings: AuthSettings, current: str, *previous: str) -> AuthSettings:
    return settings.model_copy(
        update={
            "key_encryption_key": SecretStr(current),
            "previous_key_encryption_keys": [SecretStr(key) for key in previous],
        }
    )


async def call(amqp_url: str, type: str, data: dict[str, Any]) -> Any:
    bus = Bus(amqp_url, service="test-client")
    await bus.connect()
    try:
        return await bus.call(
            "wharf.auth.rpc", Envelope(type=type, body={"data": data}), timeout=10
        )
    finally:
        await bus.close()


async def login(amqp_url: str) -> dict[str, Any]:
    data = {"email": "admin@example.com", "password": PASSWORD}
    return dict(await call(amqp_url, "auth.token", data))


async def stored_keys(database_url: str) -> list[tuple[str, bytes]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT kid, private_key FROM auth.signing_keys")
    finally:
        await conn.close()
    return [(row["kid"], row["private_key"]) for row in rows]


async def test_logins_survive_a_key_encryption_key_rotation(
    auth_settings: AuthSettings, amqp_url: str
) -> None:
    async with running(spec(), with_keys(auth_settings, "key-a")):
        tenant = {"name": "Acme", "admin_email": "admin@example.com", "admin_password": PASSWORD}
        await call(amqp_url, "auth.create_tenant", tenant)
        await login(amqp_url)

    async with running(spec(), with_keys(auth_settings, "key-b", "key-a")):
        assert await login(amqp_url)

    # Every key was sealed again under the new key, so the old one can go.
    only_b = keys.KeyVault(["key-b"])
    for kid, sealed in await stored_keys(auth_settings.database_url):
        assert not only_b.needs_reseal(kid, sealed)
    async with running(spec(), with_keys(auth_settings, "key-b")):
        assert await login(amqp_url)


async def test_auth_refuses_to_start_when_no_key_opens_the_signing_key(
    auth_settings: AuthSettings,
) -> None:
    async with running(spec(), with_keys(auth_settings, "key-a")):
        pass

    with pytest.raises(StartupError) as raised:
        async with running(spec(), with_keys(auth_settings, "key-b", "key-c")):
            pass

    message = str(raised.value)
    assert "WHARF_KEY_ENCRYPTION_KEY" in message
    assert "WHARF_PREVIOUS_KEY_ENCRYPTION_KEYS" in message
    assert "key-a" not in message and "key-b" not in message


def test_previous_keys_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_KEY_ENCRYPTION_KEY", "key-c")
    monkeypatch.setenv("WHARF_PREVIOUS_KEY_ENCRYPTION_KEYS", "key-b, key-a")

    assert AuthSettings().sealing_keys() == ["key-c", "key-b", "key-a"]
