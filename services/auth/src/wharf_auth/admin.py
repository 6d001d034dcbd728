"""Operator commands: grant the ops role and rotate signing keys.

These are plain coroutines so the `wharf` command can call them; the
service's ``python -m wharf_auth`` exposes them as subcommands too.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from wharf_auth import keys
from wharf_auth.app import SCHEMA, spec
from wharf_common import db
from wharf_common.errors import NotFound


async def _pool(database_url: str) -> asyncpg.Pool:
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    migrations = spec().migrations
    assert migrations is not None
    await db.migrate(pool, SCHEMA, migrations)
    return pool


async def grant_ops(database_url: str, email: str) -> None:
    """Give the user with `email` the ops role; NotFound when there is no such user."""
    pool = await _pool(database_url)
    try:
        async with pool.acquire() as conn:
            updated = await conn.fetchval(
                "UPDATE auth.users SET roles = array_append(roles, 'ops')"
                " WHERE lower(email) = lower($1) AND NOT 'ops' = ANY(roles) RETURNING id",
                email.strip(),
            )
            if updated is None:
                exists = await conn.fetchval(
                    "SELECT 1 FROM auth.users WHERE lower(email) = lower($1)", email.strip()
                )
                if exists is None:
                    raise NotFound(f"no user with email {email!r}")
    finally:
        await pool.close()


async def rotate_keys(
    database_url: str, key_encryption_keys: Sequence[str], access_token_ttl: int
) -> str:
    """Start signing with a new key and return its kid; old keys stay published a while."""
    pool = await _pool(database_url)
    try:
        async with pool.acquire() as conn:
            kid = await keys.rotate(conn, keys.KeyVault(key_encryption_keys), access_token_ttl)
            return kid
    finally:
        await pool.close()
