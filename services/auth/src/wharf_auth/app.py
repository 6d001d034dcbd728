"""The auth service's factory: its spec and the setup that registers its work."""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any

from wharf_auth import __version__, keys
from wharf_auth.handlers import QUEUE, AuthService
from wharf_auth.passwords import Passwords
from wharf_auth.sessions import Sessions
from wharf_auth.settings import AuthSettings
from wharf_common.envelope import Envelope
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import DEVELOPMENT_KEY_ENCRYPTION_KEY

logger = logging.getLogger(__name__)

SCHEMA = "auth"


def passwords_for(settings: AuthSettings) -> Passwords:
    """The password hasher the settings describe."""
    return Passwords(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
    )


async def setup(rt: Runtime) -> None:
    """Serve auth's RPC queue once its signing keys open; the first is made if there is none."""
    settings = rt.settings
    assert isinstance(settings, AuthSettings)
    passwords = passwords_for(settings)
    vault = keys.KeyVault(settings.sealing_keys())
    service: list[AuthService] = []

    async def handle(envelope: Envelope) -> Any:
        # The pool exists only once the runtime has connected, after setup.
        if not service:
            sessions = Sessions(rt.db, settings, passwords, vault)
            service.append(AuthService(rt.db, sessions, passwords))
        return await service[0].handle(envelope)

    async def signing_keys() -> None:
        if settings.key_encryption_key.get_secret_value() == DEVELOPMENT_KEY_ENCRYPTION_KEY:
            logger.warning(
                "signing keys are sealed with the development key;"
                " set WHARF_KEY_ENCRYPTION_KEY outside development"
            )
        async with rt.db.acquire() as conn:
            await keys.reseal(conn, vault)
            await keys.ensure_key(conn, vault)

    rt.before_work(signing_keys)
    rt.serve_rpc(QUEUE, handle)


def spec() -> ServiceSpec:
    """Describe the auth service to the runtime."""
    return ServiceSpec(
        name="auth",
        version=__version__,
        setup=setup,
        schema=SCHEMA,
        migrations=files("wharf_auth") / "migrations",
        uses_storage=False,
    )
