from __future__ import annotations

from typing import Any

import asyncpg
import jwt
import pytest

from wharf_auth import admin
from wharf_auth.settings import AuthSettings
from wharf_common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)

PASSWORD = "correct horse battery staple"


async def make_tenant(client: Any, email: str = "admin@example.com") -> dict[str, Any]:
    data = {"name": "Acme", "admin_email": email, "admin_password": PASSWORD}
    return dict(await client("auth.create_tenant", data))


async def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, Any]:
    return dict(await client("auth.token", {"email": email, "password": password}))


def claims_of(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    return dict(jwt.decode(token, key, algorithms=["EdDSA"], issuer="wharf"))


async def test_tenant_admin_gets_a_signed_access_token(client: Any) -> None:
    tenant = await make_tenant(client)

    pair = await login(client, "Admin@Example.com")
    claims = claims_of(pair["access_token"], await client("auth.jwks", {}))

    assert claims["tenant"] == tenant["tenant_id"]
    assert claims["sub"] == tenant["admin_user_id"]
    assert claims["roles"] == ["admin"]
    assert pair["expires_in"] == 900


async def test_duplicate_email_is_a_conflict(client: Any) -> None:
    await make_tenant(client)
    with pytest.raises(Conflict):
        await make_tenant(client, "ADMIN@example.com")


async def test_refresh_rotates_and_reuse_revokes_the_family(client: Any) -> None:
    await make_tenant(client)
    first = await login(client, "admin@example.com")

    second = await client("auth.refresh", {"refresh_token": first["refresh_token"]})
    assert second["refresh_token"] != first["refresh_token"]

    with pytest.raises(Unauthorized):
        await client("auth.refresh", {"refresh_token": first["refresh_token"]})
    with pytest.raises(Unauthorized):
        await client("auth.refresh", {"refresh_token": second["refresh_token"]})


async def test_logout_revokes_the_refresh_token(client: Any) -> None:
    await make_tenant(client)
    pair = await login(client, "admin@example.com")

    await client("auth.logout", {"refresh_token": pair["refresh_token"]})

    with pytest.raises(Unauthorized):
        await client("auth.refresh", {"refresh_token": pair["refresh_token"]})


async def test_unknown_email_and_wrong_password_give_the_same_error(client: Any) -> None:
    await make_tenant(client)

    with pytest.raises(Unauthorized) as unknown:
        await login(client, "nobody@example.com")
    with pytest.raises(Unauthorized) as wrong:
        await login(client, "admin@example.com", "not the password")

    assert unknown.value.detail == wrong.value.detail
    assert unknown.value.extra == wrong.value.extra


async def test_repeated_failures_are_refused_with_retry_after(client: Any) -> None:
    await make_tenant(client)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await login(client, "admin@example.com", "wrong password")

    with pytest.raises(TooManyRequests) as refused:
        await login(client, "admin@example.com")

    assert refused.value.retry_after >= 1


async def test_unknown_accounts_are_throttled_like_real_ones(client: Any) -> None:
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await login(client, "ghost@example.com", "wrong password")

    with pytest.raises(TooManyRequests):
        await login(client, "ghost@example.com", "wrong password")


async def test_rotation_keeps_old_tokens_verifiable(
    client: Any, auth_settings: AuthSettings
) -> None:
    await make_tenant(client)
    before = await login(client, "admin@example.com")

    kid = await admin.rotate_keys(
        auth_settings.database_url,
        auth_settings.sealing_keys(),
        auth_settings.access_token_ttl,
    )
    after = await login(client, "admin@example.com")
    jwks = await client("auth.jwks", {})

    assert jwt.get_unverified_header(after["access_token"])["kid"] == kid
    assert claims_of(before["access_token"], jwks)["roles"] == ["admin"]
    assert claims_of(after["access_token"], jwks)["roles"] == ["admin"]


async def test_private_keys_are_encrypted_at_rest(client: Any, auth_settings: AuthSettings) -> None:
    await client("auth.jwks", {})
    conn = await asyncpg.connect(auth_settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT private_key, public_jwk::text AS jwk FROM auth.signing_keys"
        )
    finally:
        await conn.close()

    assert rows
    for row in rows:
        assert len(row["private_key"]) == 12 + 32 + 16
        assert '"d"' not in row["jwk"]


async def test_users_are_added_by_admins_without_ops(client: Any) -> None:
    tenant = await make_tenant(client)
    admin_caller = {"tenant": tenant["tenant_id"], "subject": "x", "roles": ["admin"]}
    member_caller = {**admin_caller, "roles": ["member"]}
    user = {"email": "m@example.com", "password": PASSWORD, "roles": ["member"]}

    with pytest.raises(Forbidden):
        await client("auth.create_user", user, caller=member_caller)
    with pytest.raises(Unprocessable):
        await client("auth.create_user", {**user, "roles": ["ops"]}, caller=admin_caller)
    created = await client("auth.create_user", user, caller=admin_caller)

    assert created["roles"] == ["member"]
    claims = claims_of((await login(client, "m@example.com"))["access_token"],
                       await client("auth.jwks", {}))  # fmt: skip
    assert claims["tenant"] == tenant["tenant_id"]


async def test_grant_ops_is_an_operator_command(client: Any, auth_settings: AuthSettings) -> None:
    await make_tenant(client)

    await admin.grant_ops(auth_settings.database_url, "admin@example.com")
    with pytest.raises(NotFound):
        await admin.grant_ops(auth_settings.database_url, "nobody@example.com")

    claims = claims_of((await login(client, "admin@example.com"))["access_token"],
                       await client("auth.jwks", {}))  # fmt: skip
    assert sorted(claims["roles"]) == ["admin", "ops"]


async def test_api_keys_verify_record_use_and_revoke(
    client: Any, auth_settings: AuthSettings
) -> None:
    tenant = await make_tenant(client)
    other = await make_tenant(client, "other@example.com")
    caller = {"tenant": tenant["tenant_id"], "subject": "x", "roles": ["admin"]}
    stranger = {"tenant": other["tenant_id"], "subject": "y", "roles": ["admin"]}
    created = await client(
        "auth.create_api_key", {"name": "carrier", "scopes": ["carrier:ingest"]}, caller=caller
    )

    verified = await client("auth.verify_api_key", {"key": created["key"]})
    assert verified == {"id": created["id"], "tenant": tenant["tenant_id"],
                        "scopes": ["carrier:ingest"]}  # fmt: skip

    with pytest.raises(NotFound):
        await client("auth.revoke_api_key", {"id": created["id"]}, caller=stranger)
    await client("auth.revoke_api_key", {"id": created["id"]}, caller=caller)
    with pytest.raises(Unauthorized):
        await client("auth.verify_api_key", {"key": created["key"]})

    conn = await asyncpg.connect(auth_settings.database_url)
    try:
        row = await conn.fetchrow("SELECT key_hash, last_used_at FROM auth.api_keys")
    finally:
        await conn.close()
    assert row["last_used_at"] is not None
    assert created["key"].encode() not in bytes(row["key_hash"])


async def test_caller_must_match_the_envelope_tenant(client: Any) -> None:
    with pytest.raises(Unauthorized):
        await client("auth.create_user", {"email": "a@b.co", "password": PASSWORD})
