"""Logins, access tokens and refresh-token families."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from wharf_auth import keys, throttle
from wharf_auth.models import TokenPair
from wharf_auth.passwords import Passwords
from wharf_auth.settings import AuthSettings
from wharf_common import deadlines
from wharf_common.db import Connection
from wharf_common.errors import Unauthorized

logger = logging.getLogger(__name__)

LOGIN_FAILED = "invalid email or password"
REFRESH_FAILED = "invalid refresh token"


def token_hash(token: str) -> bytes:
    """Hash of an opaque, high-entropy token as stored and looked up."""
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    """Issues, rotates and revokes tokens."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: AuthSettings,
        passwords: Passwords,
        vault: keys.KeyVault,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.passwords = passwords
        self.vault = vault
        self.policy = throttle.Policy(
            window=settings.throttle_window,
            account_free=settings.throttle_account_free,
            address_free=settings.throttle_address_free,
            base_delay=settings.throttle_base_delay,
            max_delay=settings.throttle_max_delay,
        )

    async def login(self, email: str, password: str, address: str | None) -> TokenPair:
        """Exchange email and password for a token pair; one error for every failure."""
        subjects = throttle.subjects(email, address)
        async with self.pool.acquire() as conn:
            await throttle.check(conn, subjects)
            user = await conn.fetchrow(
                "SELECT id, tenant_id, roles, password_hash FROM auth.users"
                " WHERE lower(email) = $1",
                email.strip().lower(),
            )

        stored = user["password_hash"] if user is not None else None
        if not await self.passwords.verify(stored, password):
            async with self.pool.acquire() as conn, conn.transaction():
                await throttle.record_failure(conn, subjects, self.policy)
            raise Unauthorized(LOGIN_FAILED)

        assert user is not None
        async with self.pool.acquire() as conn, conn.transaction():
            await throttle.clear_account(conn, subjects)
            if self.passwords.needs_rehash(user["password_hash"]):
                await conn.execute(
                    "UPDATE auth.users SET password_hash = $2 WHERE id = $1",
                    user["id"],
                    await self.passwords.hash(password),
                )
            pair = await self._issue(conn, user, family=uuid.uuid4())
        logger.info("login", extra={"user": str(user["id"])})
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token; presenting a rotated one revokes its whole family."""
        reused = False
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT r.id, r.family_id, r.used_at, r.revoked_at, r.expires_at,"
                " u.id AS user_id, u.tenant_id, u.roles"
                " FROM auth.refresh_tokens r JOIN auth.users u ON u.id = r.user_id"
                " WHERE r.token_hash = $1 FOR UPDATE OF r",
                token_hash(refresh_token),
            )
            if row is None or row["revoked_at"] is not None:
                raise Unauthorized(REFRESH_FAILED)
            if row["used_at"] is not None:
                await self._revoke_family(conn, row["family_id"])
                reused = True
            elif row["expires_at"] <= deadlines.now():
                raise Unauthorized(REFRESH_FAILED)
            else:
                await conn.execute(
                    "UPDATE auth.refresh_tokens SET used_at = now() WHERE id = $1", row["id"]
                )
                user = {"id": row["user_id"], "tenant_id": row["tenant_id"], "roles": row["roles"]}
                return await self._issue(conn, user, family=row["family_id"])
        # Raised after the commit, so the family stays revoked.
        assert reused
        logger.warning("a rotated refresh token was reused; revoked its family")
        raise Unauthorized(REFRESH_FAILED)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's family; unknown tokens are ignored."""
        async with self.pool.acquire() as conn, conn.transaction():
            family = await conn.fetchval(
                "SELECT family_id FROM auth.refresh_tokens WHERE token_hash = $1",
                token_hash(refresh_token),
            )
            if family is not None:
                await self._revoke_family(conn, family)

    async def _revoke_family(self, conn: Connection, family: uuid.UUID) -> None:
        await conn.execute(
            "UPDATE auth.refresh_tokens SET revoked_at = now()"
            " WHERE family_id = $1 AND revoked_at IS NULL",
            family,
        )

    async def _issue(self, conn: Connection, user: Any, *, family: uuid.UUID) -> TokenPair:
        kid, private = await keys.active_key(conn, self.vault)
        issued = deadlines.now()
        ttl = self.settings.access_token_ttl
        claims = {
            "iss": self.settings.issuer,
            "sub": str(user["id"]),
            "tenant": str(user["tenant_id"]),
            "roles": list(user["roles"]),
            "iat": int(issued.timestamp()),
            "exp": int(issued.timestamp()) + ttl,
            "jti": uuid.uuid4().hex,
        }
        refresh = secrets.token_urlsafe(32)
        await conn.execute(
            "INSERT INTO auth.refresh_tokens (id, family_id, user_id, token_hash, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(),
            family,
            user["id"],
            token_hash(refresh),
            issued + timedelta(seconds=self.settings.refresh_token_ttl),
        )
        return TokenPair(
            access_token=keys.sign(kid, private, claims), refresh_token=refresh, expires_in=ttl
        )
