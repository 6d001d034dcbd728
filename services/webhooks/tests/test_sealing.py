"""Endpoint secrets are stored sealed, and rotating the sealing key loses no endpoint."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from aiohttp import web
from pydantic import SecretStr

from wharf_common import events
from wharf_common.bus import Bus
from wharf_common.testing import running
from wharf_webhooks import signing
from wharf_webhooks.app import spec
from wharf_webhooks.sealing import SealError, SecretBox
from wharf_webhooks.settings import WebhookSettings

from .conftest import Rpc, Serve

RENDERED = "document.rendered"


def test_a_box_opens_what_it_sealed_and_plain_legacy_secrets() -> None:
    old, new = "the old key encryption key", "the new key encryption key"
    sealed_old = SecretBox([old]).seal("whsec_a")
    box = SecretBox([new, old])

    assert box.open(sealed_old) == "whsec_a"
    assert box.open("whsec_plain") == "whsec_plain"
    assert box.needs_reseal(sealed_old) and box.needs_reseal("whsec_plain")
    assert not box.needs_reseal(box.seal("whsec_b"))
    with pytest.raises(SealError):
        SecretBox([new]).open(sealed_old)


def test_previous_keys_come_after_the_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_KEY_ENCRYPTION_KEY", "new")
    monkeypatch.setenv("WHARF_PREVIOUS_KEY_ENCRYPTION_KEYS", "older, old")

    assert WebhookSettings().sealing_keys() == ["new", "older", "old"]


async def _stored_secrets(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return [row["secret"] for row in await conn.fetch("SELECT secret FROM webhooks.endpoints")]
    finally:
        await conn.close()


async def test_rotation_reseals_old_and_plain_secrets_and_deliveries_stay_signed(
    webhook_settings: WebhookSettings, rpc: Rpc, serve: Serve, bus: Bus, database_url: str
) -> None:
    old, new = "the old key encryption key", "the new key encryption key"
    signed: list[bool] = []
    secret: list[str] = []

    async def receiver(request: web.Request) -> web.Response:
        body = await request.read()
        signed.append(signing.verify(secret[0], request.headers["Wharf-Signature"], body))
        return web.Response(status=204)

    url = await serve(receiver)
    with_old = webhook_settings.model_copy(update={"key_encryption_key": SecretStr(old)})
    async with running(spec(), with_old):
        created = await rpc("create", "t1", url=url, event_types=[RENDERED])
    secret.append(created["secret"])
    [stored] = await _stored_secrets(database_url)
    assert created["secret"] not in stored
    # The current key comes first; the old one still opens what it sealed.
    rotated = {
        "key_encryption_key": SecretStr(new),
        "previous_key_encryption_keys": [SecretStr(old)],
    }
    async with running(spec(), webhook_settings.model_copy(update=rotated)):
        deadline = time.monotonic() + 15
        while SecretBox([new]).needs_reseal((await _stored_secrets(database_url))[0]):
            assert time.monotonic() < deadline, "the secret was never sealed under the new key"
            await asyncio.sleep(0.1)
        body = events.DocumentRendered(id=uuid.uuid4(), pages=1, bytes=10)
        await bus.publish_event(events.event_envelope(body, tenant="t1"))
        while not signed:
            assert time.monotonic() < deadline + 15, "nothing was delivered"
            await asyncio.sleep(0.05)

    [resealed] = await _stored_secrets(database_url)
    assert SecretBox([new]).open(resealed) == created["secret"]
    assert signed == [True]


async def test_a_secret_stored_before_sealing_is_sealed_at_start(
    webhook_settings: WebhookSettings, rpc: Rpc, serve: Serve, database_url: str
) -> None:
    async def accept(request: web.Request) -> web.Response:
        return web.Response(status=204)

    url = await serve(accept)
    async with running(spec(), webhook_settings):
        created = await rpc("create", "t1", url=url, event_types=[RENDERED])
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE webhooks.endpoints SET secret = $1", created["secret"])
        finally:
            await conn.close()
    async with running(spec(), webhook_settings):
        deadline = time.monotonic() + 15
        while created["secret"] in await _stored_secrets(database_url):
            assert time.monotonic() < deadline, "the plain secret was never sealed"
            await asyncio.sleep(0.1)
