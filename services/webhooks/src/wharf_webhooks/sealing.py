"""Endpoint secrets at rest: sealed with Fernet, so a copy of the database signs nothing.

The service needs each secret itself to sign deliveries, so secrets cannot
be hashed like passwords; they are encrypted (AES-128-CBC with an HMAC,
`cryptography`'s Fernet) under a key derived from the platform's key
encryption key, the setting auth seals its signing keys with. To rotate it,
set the new one and list the old one in the previous keys: every task seals
what it finds under the new key when it starts (`reseal`), and the old one
can go once all tasks run with the new one. Until then a task still on the
old key cannot open a newly sealed secret; its deliveries wait and retry.

Rows written before sealing hold the secret itself (``whsec_...``); they
are read as they are and sealed at the next start.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

logger = logging.getLogger(__name__)

_PLAIN_PREFIX = "whsec_"


class SealError(ValueError):
    """A stored secret that none of the configured keys opens."""


class SecretBox:
    """Seals and opens endpoint secrets with the configured keys."""

    def __init__(self, key_encryption_keys: Sequence[str]) -> None:
        if not key_encryption_keys:
            raise ValueError("SecretBox needs at least one key")
        self._keys = [Fernet(_fernet_key(key)) for key in key_encryption_keys]
        self._fernet = MultiFernet(self._keys)

    def seal(self, secret: str) -> str:
        """The stored form of `secret`."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored value holds (a legacy plain one as it is)."""
        if stored.startswith(_PLAIN_PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise SealError("no configured key opens this endpoint's secret") from None

    def needs_reseal(self, stored: str) -> bool:
        """True for a plain secret, or one sealed under a key that no longer comes first."""
        if stored.startswith(_PLAIN_PREFIX):
            return True
        try:
            self._keys[0].decrypt(stored.encode())
        except InvalidToken:
            return True
        return False


def _fernet_key(key_encryption_key: str) -> bytes:
    digest = hashlib.sha256(b"wharf-webhook-secrets\0" + key_encryption_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


async def reseal(pool: asyncpg.Pool[asyncpg.Record], box: SecretBox) -> int:
    """Seal plain secrets and re-seal old ones under the first key; return how many."""
    rows = await pool.fetch("SELECT id, secret FROM webhooks.endpoints")
    changed = 0
    for row in rows:
        if not box.needs_reseal(row["secret"]):
            continue
        try:
            sealed = box.seal(box.open(row["secret"]))
        except SealError:
            logger.error("endpoint %s has a secret no configured key opens", row["id"])
            continue
        await pool.execute(
            "UPDATE webhooks.endpoints SET secret = $2 WHERE id = $1 AND secret = $3",
            row["id"],
            sealed,
            row["secret"],
        )
        changed += 1
    if changed:
        logger.info("sealed %d endpoint secrets under the current key", changed)
    return changed
