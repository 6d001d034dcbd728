"""PostgreSQL through asyncpg: pools, per-service schema migrations, idempotent handling."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

logger = logging.getLogger(__name__)

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A plain connection or one borrowed from a pool."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quote_schema(schema: str) -> str:
    """Return `schema` quoted for SQL; raise ValueError unless it is a plain identifier."""
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return f'"{schema}"'


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text"
        )


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Nothing to undo on release: asyncpg itself rolls back an open transaction."""


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool[asyncpg.Record]:
    """Open a connection pool whose json and jsonb columns read and write Python values.

    A released connection goes back to the pool without asyncpg's default
    reset query (unlock, close cursors, unlisten, reset settings), which
    would cost a round trip on every release. So borrowed connections must
    leave no session state behind: settings are changed with ``SET LOCAL``
    inside a transaction, and whoever takes a session advisory lock or
    listens releases it before giving the connection back (see `migrate`
    and the outbox relay).
    """
    return await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )


def _shared_tables(schema: str) -> str:
    return f"""
        CREATE SCHEMA IF NOT EXISTS {schema};
        CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
            name text PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS {schema}.handled_messages (
            message_id uuid PRIMARY KEY,
            handled_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS handled_messages_handled_at
            ON {schema}.handled_messages (handled_at);
        CREATE TABLE IF NOT EXISTS {schema}.outbox (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            destination text NOT NULL,
            envelope jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            attempts int NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now()
        );
    """


def _read_migrations(migrations: Path | Traversable) -> list[tuple[str, str]]:
    files = [f for f in migrations.iterdir() if f.name.endswith(".sql") and f.is_file()]
    return [(f.name, f.read_text(encoding="utf-8")) for f in sorted(files, key=lambda f: f.name)]


async def migrate(
    pool: asyncpg.Pool[asyncpg.Record], schema: str, migrations: Path | Traversable
) -> list[str]:
    """Bring `schema` up to date with the ``*.sql`` files in `migrations`; return those applied.

    Files are applied in name order, each once and in its own transaction with
    the schema first on the search path, and recorded in ``schema_migrations``.
    A session advisory lock keyed on the schema serialises concurrent callers,
    so every task of a service may call this at start. A file must not manage
    its own transaction.
    """
    quoted = quote_schema(schema)
    files = await asyncio.to_thread(_read_migrations, migrations)
    applied: list[str] = []

    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", _lock_name(schema))
        try:
            async with conn.transaction():
                await conn.execute(_shared_tables(quoted))
            done = {
                r["name"] for r in await conn.fetch(f"SELECT name FROM {quoted}.schema_migrations")
            }
            for name, sql in files:
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {quoted}, public")
                    await conn.execute(sql)
                    await conn.execute(
                        f"INSERT INTO {quoted}.schema_migrations (name) VALUES ($1)", name
                    )
                logger.info("applied migration %s to schema %s", name, schema)
                applied.append(name)
        finally:
            try:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", _lock_name(schema)
                )
            except BaseException:
                # The pool does not reset released connections: never hand
                # one back that may still hold the lock.
                conn.terminate()
                raise
    return applied


def _lock_name(schema: str) -> str:
    return f"wharf.migrate.{schema}"


async def claim_message(conn: Connection, schema: str, message_id: uuid.UUID) -> bool:
    """Record `message_id` as handled; True the first time, False for a redelivery.

    Call it inside the transaction that commits the handler's effect: if the
    transaction rolls back the claim goes with it, and once it commits a
    redelivered copy of the message finds the claim and does nothing.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("claim_message must run inside the handler's transaction")
    claimed: Any = await conn.fetchval(
        f"INSERT INTO {quote_schema(schema)}.handled_messages (message_id) VALUES ($1)"
        " ON CONFLICT DO NOTHING RETURNING true",
        message_id,
    )
    return claimed is True


async def claim_messages(
    conn: Connection, schema: str, message_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Record several message ids as handled at once; return those claimed for the first time.

    As `claim_message`, it belongs in the transaction that commits the effect.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("claim_messages must run inside the handler's transaction")
    rows = await conn.fetch(
        f"INSERT INTO {quote_schema(schema)}.handled_messages (message_id)"
        " SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING message_id",
        list(message_ids),
    )
    return {row["message_id"] for row in rows}


async def forget_handled(
    pool: asyncpg.Pool[asyncpg.Record], schema: str, older_than: timedelta, *, batch: int = 10_000
) -> int:
    """Delete the claims of messages handled more than `older_than` ago; return how many.

    A claim only has to outlive the redelivery of its message (a task that
    died between commit and ack), which takes seconds to minutes; keeping
    claims for days costs nothing but the table's size. Deleting in batches
    keeps each transaction short.
    """
    quoted = quote_schema(schema)
    cutoff = datetime.now(UTC) - older_than
    return await delete_before(
        pool, f"{quoted}.handled_messages", "message_id", "handled_at", cutoff, batch=batch
    )


async def delete_before(
    pool: asyncpg.Pool[asyncpg.Record],
    table: str,
    key: str,
    column: str,
    cutoff: datetime,
    *,
    batch: int = 10_000,
) -> int:
    """Delete the rows of `table` whose `column` is before `cutoff`; return how many.

    `batch` rows at a time, found by `key` (its key columns, such as
    ``"tenant, id"``), so each statement is a short transaction.
    """
    deleted_total = 0
    while True:
        status = await pool.execute(
            f"DELETE FROM {table} WHERE ({key}) IN"
            f" (SELECT {key} FROM {table} WHERE {column} < $1 LIMIT $2)",
            cutoff,
            batch,
        )
        deleted = int(status.rsplit(" ", 1)[-1])
        deleted_total += deleted
        if deleted < batch:
            return deleted_total
