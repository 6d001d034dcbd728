"""Auth's RPC operations, dispatched on the envelope type from one queue."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from wharf_auth import keys
from wharf_auth.models import (
    ApiKeyRef,
    Caller,
    CreateApiKey,
    CreateTenant,
    CreateUser,
    RefreshRequest,
    TokenRequest,
    VerifyApiKey,
)
from wharf_auth.passwords import Passwords
from wharf_auth.sessions import Sessions
from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized

logger = logging.getLogger(__name__)

QUEUE = "wharf.auth.rpc"
API_KEY_PREFIX = "wk_"

Operation = Callable[[Envelope], Awaitable[Any]]


def _caller(envelope: Envelope) -> Caller:
    body = envelope.body or {}
    if not isinstance(body.get("caller"), dict):
        raise Unauthorized("this operation needs a verified credential")
    caller = Caller.model_validate(body["caller"])
    if envelope.tenant != str(caller.tenant):
        raise Unauthorized("the caller's tenant does not match the envelope")
    return caller


def _admin(envelope: Envelope) -> Caller:
    caller = _caller(envelope)
    if "admin" not in caller.roles:
        raise Forbidden("only a tenant admin may do this")
    return caller


def _data(envelope: Envelope) -> dict[str, Any]:
    body = envelope.body or {}
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise BadRequest("the request data must be an object")
    return data


def _key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class AuthService:
    """The operations auth answers, bound to its pool and secrets."""

    def __init__(self, pool: asyncpg.Pool, sessions: Sessions, passwords: Passwords) -> None:
        self.pool = pool
        self.sessions = sessions
        self.passwords = passwords
        self.operations: dict[str, Operation] = {
            "auth.create_tenant": self.create_tenant,
            "auth.token": self.token,
            "auth.refresh": self.refresh,
            "auth.logout": self.logout,
            "auth.jwks": self.jwks,
            "auth.create_user": self.create_user,
            "auth.create_api_key": self.create_api_key,
            "auth.revoke_api_key": self.revoke_api_key,
            "auth.verify_api_key": self.verify_api_key,
        }

    async def handle(self, envelope: Envelope) -> Any:
        """Run the operation the envelope's type names."""
        operation = self.operations.get(envelope.type)
        if operation is None:
            raise BadRequest(f"unknown operation {envelope.type!r}")
        return await operation(envelope)

    async def create_tenant(self, envelope: Envelope) -> dict[str, Any]:
        """Create a tenant and its first admin user."""
        request = CreateTenant.model_validate(_data(envelope))
        tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
        password_hash = await self.passwords.hash(request.admin_password)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO auth.tenants (id, name) VALUES ($1, $2)", tenant_id, request.name
                )
                await self._insert_user(
                    conn, tenant_id, user_id, request.admin_email, password_hash, ["admin"]
                )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("a user with this email already exists") from exc
        logger.info("created a tenant", extra={"tenant": str(tenant_id)})
        return {"tenant_id": str(tenant_id), "admin_user_id": str(user_id)}

    async def token(self, envelope: Envelope) -> dict[str, Any]:
        """Log in with email and password."""
        request = TokenRequest.model_validate(_data(envelope))
        address = (envelope.body or {}).get("address")
        pair = await self.sessions.login(request.email, request.password, address)
        return pair.model_dump()

    async def refresh(self, envelope: Envelope) -> dict[str, Any]:
        """Rotate a refresh token."""
        request = RefreshRequest.model_validate(_data(envelope))
        return (await self.sessions.refresh(request.refresh_token)).model_dump()

    async def logout(self, envelope: Envelope) -> dict[str, Any]:
        """Revoke a refresh token and its family."""
        request = RefreshRequest.model_validate(_data(envelope))
        await self.sessions.logout(request.refresh_token)
        return {"revoked": True}

    async def jwks(self, envelope: Envelope) -> dict[str, Any]:
        """The public signing keys."""
        async with self.pool.acquire() as conn:
            return await keys.jwks(conn)

    async def create_user(self, envelope: Envelope) -> dict[str, Any]:
        """Add a user to the caller's tenant."""
        caller = _admin(envelope)
        request = CreateUser.model_validate(_data(envelope))
        user_id = uuid.uuid4()
        password_hash = await self.passwords.hash(request.password)
        roles: list[str] = sorted(set(request.roles))
        try:
            async with self.pool.acquire() as conn:
                await self._insert_user(
                    conn, caller.tenant, user_id, request.email, password_hash, roles
                )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("a user with this email already exists") from exc
        return {"id": str(user_id), "email": request.email, "roles": roles}

    async def _insert_user(
        self,
        conn: Any,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        email: str,
        password_hash: str,
        roles: list[str],
    ) -> None:
        await conn.execute(
            "INSERT INTO auth.users (id, tenant_id, email, password_hash, roles)"
            " VALUES ($1, $2, $3, $4, $5)",
            user_id,
            tenant_id,
            email.strip(),
            password_hash,
            roles,
        )

    async def create_api_key(self, envelope: Envelope) -> dict[str, Any]:
        """Create an API key; the key itself is returned this once and stored hashed."""
        caller = _admin(envelope)
        request = CreateApiKey.model_validate(_data(envelope))
        key_id = uuid.uuid4()
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        scopes = sorted(set(request.scopes))
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO auth.api_keys (id, tenant_id, name, key_hash, scopes)"
                " VALUES ($1, $2, $3, $4, $5)",
                key_id,
                caller.tenant,
                request.name,
                _key_hash(key),
                scopes,
            )
        return {"id": str(key_id), "name": request.name, "scopes": scopes, "key": key}

    async def revoke_api_key(self, envelope: Envelope) -> dict[str, Any]:
        """Revoke one of the caller's tenant's API keys; another tenant's key is not found."""
        caller = _admin(envelope)
        request = ApiKeyRef.model_validate(_data(envelope))
        async with self.pool.acquire() as conn:
            revoked = await conn.fetchval(
                "UPDATE auth.api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE id = $1 AND tenant_id = $2 RETURNING id",
                request.id,
                caller.tenant,
            )
        if revoked is None:
            raise NotFound("no such API key")
        return {"id": str(request.id), "revoked": True}

    async def verify_api_key(self, envelope: Envelope) -> dict[str, Any]:
        """Return the tenant and scopes of a valid API key, recording its use."""
        request = VerifyApiKey.model_validate(_data(envelope))
        digest = _key_hash(request.key)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE auth.api_keys SET last_used_at = now()"
                " WHERE key_hash = $1 AND revoked_at IS NULL"
                " RETURNING id, tenant_id, scopes, key_hash",
                digest,
            )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            raise Unauthorized("invalid API key")
        return {"id": str(row["id"]), "tenant": str(row["tenant_id"]), "scopes": row["scopes"]}
