"""Signing keys: Ed25519 pairs kept in the database, private halves encrypted at rest.

One key signs at a time. Rotation retires it, but it stays published in the
JWKS until every token it signed has expired, so nobody is logged out.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import OKPAlgorithm

from wharf_common import deadlines
from wharf_common.db import Connection
from wharf_common.errors import StartupError

logger = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
_LOCK = "wharf.auth.signing-keys"
# Retired keys stay published this long beyond the access-token lifetime, for clock skew.
_PUBLISH_MARGIN = timedelta(minutes=2)


class KeyVault:
    """Encrypts private keys with AES-GCM under keys derived from the key encryption keys.

    The first key seals; every key opens, so keys sealed before a rotation
    of the key encryption key stay readable until `reseal` has moved them
    to the current one.
    """

    def __init__(self, key_encryption_keys: Sequence[str]) -> None:
        if not key_encryption_keys:
            raise ValueError("KeyVault needs at least one key encryption key")
        self._aeads = [AESGCM(_derive(secret)) for secret in key_encryption_keys]
        self._private: dict[str, Ed25519PrivateKey] = {}

    def seal(self, kid: str, key: Ed25519PrivateKey) -> bytes:
        """Return the private key encrypted under the current key, bound to its kid."""
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        nonce = secrets.token_bytes(12)
        return nonce + self._aeads[0].encrypt(nonce, raw, kid.encode())

    def open(self, kid: str, sealed: bytes) -> Ed25519PrivateKey:
        """Return the private key `kid`, decrypting it once and caching it."""
        key = self._private.get(kid)
        if key is None:
            key = Ed25519PrivateKey.from_private_bytes(self._decrypt(kid, sealed)[1])
            self._private[kid] = key
        return key

    def needs_reseal(self, kid: str, sealed: bytes) -> bool:
        """True when `sealed` opens only under a previous key encryption key."""
        return self._decrypt(kid, sealed)[0] > 0

    def _decrypt(self, kid: str, sealed: bytes) -> tuple[int, bytes]:
        """The index of the key that opens `sealed`, and the private key's bytes."""
        for index, aead in enumerate(self._aeads):
            try:
                return index, aead.decrypt(sealed[:12], sealed[12:], kid.encode())
            except InvalidTag:
                continue
        raise UnreadableKey(kid)


class UnreadableKey(ValueError):
    """A stored signing key that none of the configured key encryption keys opens."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"no configured key encryption key opens signing key {kid}")
        self.kid = kid


def _derive(secret: str) -> bytes:
    return hashlib.sha256(b"wharf-auth-signing-keys\0" + secret.encode()).digest()


def _public_jwk(kid: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"}


async def _insert_key(conn: Connection, vault: KeyVault) -> str:
    kid = secrets.token_urlsafe(12)
    key = Ed25519PrivateKey.generate()
    await conn.execute(
        "INSERT INTO auth.signing_keys (kid, algorithm, public_jwk, private_key)"
        " VALUES ($1, $2, $3, $4)",
        kid,
        ALGORITHM,
        _public_jwk(kid, key),
        vault.seal(kid, key),
    )
    return kid


async def ensure_key(conn: Connection, vault: KeyVault) -> str:
    """Return the kid of the active key, creating the first one when there is none."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _LOCK)
        kid: str | None = await conn.fetchval(
            "SELECT kid FROM auth.signing_keys WHERE retired_at IS NULL"
            " ORDER BY created_at DESC LIMIT 1"
        )
        if kid is None:
            kid = await _insert_key(conn, vault)
            logger.info("created the first signing key", extra={"kid": kid})
        return kid


async def reseal(conn: Connection, vault: KeyVault) -> int:
    """Seal every signing key under the current key encryption key; return how many moved.

    Raises `StartupError` when the active key opens under none of the
    configured keys: auth could sign nothing. A retired key that cannot
    be opened is only logged, since nothing signs with it again.
    """
    moved = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _LOCK)
        rows = await conn.fetch(
            "SELECT kid, private_key, retired_at IS NULL AS active FROM auth.signing_keys"
        )
        for row in rows:
            kid, sealed = row["kid"], row["private_key"]
            try:
                if not vault.needs_reseal(kid, sealed):
                    continue
                resealed = vault.seal(kid, vault.open(kid, sealed))
            except UnreadableKey:
                if row["active"]:
                    raise StartupError(
                        f"the active signing key {kid} opens under no configured key encryption"
                        " key; set WHARF_KEY_ENCRYPTION_KEY to the key it was sealed with, or"
                        " list that key in WHARF_PREVIOUS_KEY_ENCRYPTION_KEYS"
                    ) from None
                logger.warning("retired signing key %s opens under no configured key", kid)
                continue
            await conn.execute(
                "UPDATE auth.signing_keys SET private_key = $2 WHERE kid = $1", kid, resealed
            )
            moved += 1
    if moved:
        logger.info("sealed %d signing keys under the current key encryption key", moved)
    return moved


async def rotate(conn: Connection, vault: KeyVault, access_token_ttl: int) -> str:
    """Start signing with a new key; the old ones stay published until their tokens expire."""
    publish_until = deadlines.now() + timedelta(seconds=access_token_ttl) + _PUBLISH_MARGIN
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _LOCK)
        await conn.execute(
            "UPDATE auth.signing_keys SET retired_at = now(), publish_until = $1"
            " WHERE retired_at IS NULL",
            publish_until,
        )
        kid = await _insert_key(conn, vault)
    logger.info("rotated signing keys", extra={"kid": kid})
    return kid


async def active_key(conn: Connection, vault: KeyVault) -> tuple[str, Ed25519PrivateKey]:
    """The kid and private key that sign new tokens."""
    row = await conn.fetchrow(
        "SELECT kid, private_key FROM auth.signing_keys WHERE retired_at IS NULL"
        " ORDER BY created_at DESC LIMIT 1"
    )
    if row is None:
        await ensure_key(conn, vault)
        return await active_key(conn, vault)
    return row["kid"], vault.open(row["kid"], row["private_key"])


async def jwks(conn: Connection) -> dict[str, Any]:
    """The JWKS document: every key whose tokens may still be valid."""
    rows = await conn.fetch(
        "SELECT public_jwk FROM auth.signing_keys"
        " WHERE publish_until IS NULL OR publish_until > now()"
        " ORDER BY created_at DESC"
    )
    return {"keys": [row["public_jwk"] for row in rows]}


def sign(kid: str, key: Ed25519PrivateKey, claims: dict[str, Any]) -> str:
    """Sign `claims` as a JWT whose header names `kid`."""
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
