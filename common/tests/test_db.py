from __future__ import annotations

import asyncio
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from wharf_common.db import (
    claim_message,
    claim_messages,
    create_pool,
    forget_handled,
    migrate,
    quote_schema,
)

SCHEMA = "things"


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    opened = await create_pool(database_url, max_size=4)
    yield opened
    await asyncio.wait_for(opened.close(), 10)


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_migrations_apply_once_in_name_order(pool: asyncpg.Pool, tmp_path: Path) -> None:
    migrations = _write(
        tmp_path / "migrations",
        {
            "002_rows.sql": "INSERT INTO items (name) VALUES ('second');",
            "001_items.sql": "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);",
            "README.md": "not a migration",
        },
    )

    first = await migrate(pool, SCHEMA, migrations)
    again = await migrate(pool, SCHEMA, migrations)
    (migrations / "003_more.sql").write_text("ALTER TABLE items ADD COLUMN note text;")
    third = await migrate(pool, SCHEMA, migrations)

    assert first == ["001_items.sql", "002_rows.sql"]
    assert again == []
    assert third == ["003_more.sql"]
    recorded = await pool.fetch(f"SELECT name FROM {SCHEMA}.schema_migrations ORDER BY name")
    assert [r["name"] for r in recorded] == ["001_items.sql", "002_rows.sql", "003_more.sql"]
    assert await pool.fetchval(f"SELECT name FROM {SCHEMA}.items") == "second"


async def test_migrations_can_come_from_package_resources(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    archive = tmp_path / "service.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("wharf_x/migrations/001_init.sql", "CREATE TABLE packaged (id int);")
        zf.writestr("wharf_x/migrations/__init__.py", "")

    applied = await migrate(pool, SCHEMA, zipfile.Path(archive, "wharf_x/migrations/"))

    assert applied == ["001_init.sql"]
    assert await pool.fetchval("SELECT to_regclass($1)::text", f"{SCHEMA}.packaged")


async def test_migrate_creates_shared_tables(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await migrate(pool, SCHEMA, _write(tmp_path / "empty", {}))

    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", SCHEMA
    )
    names = {r["table_name"] for r in tables}
    assert {"schema_migrations", "handled_messages", "outbox"} <= names


async def test_failed_migration_rolls_back_and_is_not_recorded(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    migrations = _write(
        tmp_path / "migrations",
        {
            "001_ok.sql": "CREATE TABLE ok (id int);",
            "002_bad.sql": "CREATE TABLE half (id int); SELECT no_such_column FROM ok;",
        },
    )

    with pytest.raises(asyncpg.UndefinedColumnError):
        await migrate(pool, SCHEMA, migrations)

    recorded = await pool.fetch(f"SELECT name FROM {SCHEMA}.schema_migrations")
    assert [r["name"] for r in recorded] == ["001_ok.sql"]
    assert await pool.fetchval("SELECT to_regclass($1)", f"{SCHEMA}.half") is None


async def test_concurrent_migrate_applies_each_file_once(database_url: str, tmp_path: Path) -> None:
    migrations = _write(
        tmp_path / "migrations",
        {
            "001_table.sql": "CREATE TABLE counter (n int); SELECT pg_sleep(0.2);",
            "002_row.sql": "INSERT INTO counter VALUES (1);",
        },
    )
    pools = [await create_pool(database_url, max_size=1) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(p, SCHEMA, migrations) for p in pools))
        count = await pools[0].fetchval(f"SELECT count(*) FROM {SCHEMA}.counter")
    finally:
        await asyncio.gather(*(p.close() for p in pools))

    applied = [name for result in results for name in result]
    assert sorted(applied) == ["001_table.sql", "002_row.sql"]
    assert count == 1


@pytest.mark.parametrize("schema", ["", "Things", "a-b", "x; DROP TABLE y", "1abc", "a" * 64])
async def test_invalid_schema_names_are_rejected(
    pool: asyncpg.Pool, tmp_path: Path, schema: str
) -> None:
    with pytest.raises(ValueError):
        await migrate(pool, schema, tmp_path)


def test_quote_schema() -> None:
    assert quote_schema("log_sink") == '"log_sink"'


async def test_pool_reads_and_writes_json(pool: asyncpg.Pool) -> None:
    value = {"a": [1, 2, {"b": None}], "c": "ü"}

    assert await pool.fetchval("SELECT $1::jsonb", value) == value
    assert await pool.fetchval("SELECT $1::json", value) == value


async def test_claim_message_is_true_once(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await migrate(pool, SCHEMA, tmp_path)
    message_id = uuid.uuid4()

    async with pool.acquire() as conn:
        async with conn.transaction():
            first = await claim_message(conn, SCHEMA, message_id)
        async with conn.transaction():
            second = await claim_message(conn, SCHEMA, message_id)

    assert first is True
    assert second is False


async def test_rolled_back_claim_can_be_claimed_again(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await migrate(pool, SCHEMA, tmp_path)
    message_id = uuid.uuid4()

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="handler failed"):
            async with conn.transaction():
                assert await claim_message(conn, SCHEMA, message_id)
                raise RuntimeError("handler failed")
        async with conn.transaction():
            assert await claim_message(conn, SCHEMA, message_id)


async def test_claim_message_outside_a_transaction_is_refused(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await migrate(pool, SCHEMA, tmp_path)

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await claim_message(conn, SCHEMA, uuid.uuid4())


async def test_claim_messages_returns_only_first_claims(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await migrate(pool, SCHEMA, tmp_path)
    old, new = uuid.uuid4(), uuid.uuid4()

    async with pool.acquire() as conn:
        async with conn.transaction():
            await claim_messages(conn, SCHEMA, [old])
        async with conn.transaction():
            claimed = await claim_messages(conn, SCHEMA, [old, new, new])
        with pytest.raises(RuntimeError):
            await claim_messages(conn, SCHEMA, [uuid.uuid4()])

    assert claimed == {new}


async def test_forget_handled_drops_only_old_claims(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await migrate(pool, SCHEMA, tmp_path)
    old = [uuid.uuid4() for _ in range(25)]
    recent = uuid.uuid4()
    await pool.executemany(
        f"INSERT INTO {SCHEMA}.handled_messages (message_id, handled_at)"
        " VALUES ($1, now() - interval '8 days')",
        [(message_id,) for message_id in old],
    )
    await pool.execute(f"INSERT INTO {SCHEMA}.handled_messages (message_id) VALUES ($1)", recent)

    forgotten = await forget_handled(pool, SCHEMA, timedelta(days=7), batch=10)

    left = await pool.fetch(f"SELECT message_id FROM {SCHEMA}.handled_messages")
    assert forgotten == 25
    assert [row["message_id"] for row in left] == [recent]


async def test_a_released_connection_keeps_no_migration_lock(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await migrate(pool, SCHEMA, tmp_path)

    held = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")

    assert held == 0
