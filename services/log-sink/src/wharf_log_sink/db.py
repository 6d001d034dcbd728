"""The records table: parsing shipped records, batched writes and daily partitions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
from pydantic_core import to_json

from wharf_common.db import quote_schema

logger = logging.getLogger(__name__)

SCHEMA = "log_sink"

COLUMNS = (
    "ts",
    "id",
    "level",
    "service",
    "logger",
    "message",
    "correlation_id",
    "tenant",
    "message_id",
    "fields",
    "exception",
)

Row = tuple[Any, ...]

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}

# Two sink tasks creating the same partition at once would otherwise collide.
_PARTITION_LOCK = 0x6C6F6773696E6B


_STAGING = """
    CREATE TEMP TABLE IF NOT EXISTS log_staging (
        ts timestamptz, id uuid, level smallint, service text, logger text, message text,
        correlation_id text, tenant text, message_id text, fields text, exception text
    ) ON COMMIT DELETE ROWS
"""


class InvalidRecord(ValueError):
    """A shipped log record that cannot be stored as it is."""


def level_number(level: Any) -> int:
    """Numeric level of a record's level name (``WARNING`` -> 30, ``Level 25`` -> 25)."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if not isinstance(level, str):
        raise InvalidRecord(f"level {level!r} is not a level name")
    name = level.upper()
    if name in LEVELS:
        return LEVELS[name]
    if name.startswith("LEVEL ") and name[6:].isdigit():
        return int(name[6:])
    raise InvalidRecord(f"unknown level {level!r}")


def level_name(number: int) -> str:
    """The level name for a stored number."""
    return LEVEL_NAMES.get(number, f"Level {number}")


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    return str(value)


def to_row(record: Any) -> Row:
    """Turn one shipped record (see wharf_common.logs.record_to_dict) into a table row.

    This runs for every record the platform logs, so it does only the checks
    that keep a bad record from failing a whole batch in PostgreSQL. The id
    stays text: asyncpg parses it faster than `uuid.UUID` does.
    """
    if type(record) is not dict:
        raise InvalidRecord("a record is not an object")
    get = record.get
    record_id = get("id")
    service = get("service")
    message = get("message")
    try:
        ts = datetime.fromisoformat(record["ts"])
        if type(record_id) is not str or len(record_id) not in (32, 36):
            raise ValueError("id is not a UUID")
        int(record_id.replace("-", ""), 16)
    except KeyError:
        raise InvalidRecord("missing ts") from None
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"bad id or ts: {exc}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if type(service) is not str or not service:
        raise InvalidRecord("service is not a name")
    if type(message) is not str:
        if message is None:
            raise InvalidRecord("missing message")
        message = str(message)
    level = get("level", "INFO")
    level_no = LEVELS.get(level) if type(level) is str else None
    fields = get("fields")
    if fields is not None and type(fields) is not dict:
        raise InvalidRecord("fields is not an object")
    return (
        ts,
        record_id,
        level_no if level_no is not None else level_number(level),
        service,
        _text(get("logger")) or "",
        message.replace("\x00", "") if "\x00" in message else message,
        _text(get("correlation_id")),
        _text(get("tenant")),
        _text(get("message_id")),
        to_json(fields, fallback=str).decode() if fields else None,
        _text(get("exception")),
    )


def partition_name(day: date) -> str:
    """Name of the partition that holds `day`'s records."""
    return f"records_{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


class RecordStore:
    """Writes batches of records exactly once and keeps the daily partitions.

    A batch is copied straight into the partitioned table in one transaction.
    When any record in it is stored already (a redelivery after a crash
    before the ack, or a publisher's retry), the copy fails on the primary
    key ``(ts, id)`` and the batch goes again through a staging table with
    ``ON CONFLICT DO NOTHING``, so nothing is written twice and the common
    case pays for no conflict check.
    """

    def __init__(self, pool: asyncpg.Pool, *, schema: str = SCHEMA, forward: bool = False) -> None:
        self.pool = pool
        self.schema = schema
        self.forward = forward
        self._quoted = quote_schema(schema)
        self._days: set[date] = set()
        self._merge = self._merge_sql()

    def _merge_sql(self) -> str:
        columns = ", ".join(COLUMNS)
        insert = (
            f"INSERT INTO {self._quoted}.records ({columns})"
            f" SELECT {columns} FROM pg_temp.log_staging ON CONFLICT DO NOTHING"
        )
        if not self.forward:
            return insert
        return (
            f"WITH added AS ({insert} RETURNING ts, id)"
            f" INSERT INTO {self._quoted}.forward_pending (ts, id) SELECT ts, id FROM added"
        )

    async def write(self, rows: Sequence[Row]) -> int:
        """Store `rows` in one transaction; return how many were new."""
        if not rows:
            return 0
        await self.ensure_partitions({row[0].astimezone(UTC).date() for row in rows})
        try:
            return await self._copy(rows)
        except asyncpg.UniqueViolationError:
            return await self._merge_rows(rows)
        except asyncpg.CheckViolationError:
            # No partition for a row: another task dropped one we thought we had.
            self._days.clear()
            await self.ensure_partitions({row[0].astimezone(UTC).date() for row in rows})
            return await self._merge_rows(rows)

    async def _copy(self, rows: Sequence[Row]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "records", records=rows, columns=COLUMNS, schema_name=self.schema
            )
            if self.forward:
                await conn.copy_records_to_table(
                    "forward_pending",
                    records=[(row[0], row[1]) for row in rows],
                    schema_name=self.schema,
                )
        return len(rows)

    async def _merge_rows(self, rows: Sequence[Row]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGING)
            await conn.copy_records_to_table(
                "log_staging", records=rows, columns=COLUMNS, schema_name="pg_temp"
            )
            status = await conn.execute(self._merge)
        added = int(status.rsplit(" ", 1)[-1])
        logger.info("%d of %d records in a batch were stored already", len(rows) - added, len(rows))
        return added

    async def ensure_partitions(self, days: Iterable[date]) -> None:
        """Create the partitions for `days` unless they exist already."""
        missing = sorted(set(days) - self._days)
        if not missing:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            for day in missing:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._quoted}.{partition_name(day)}"
                    f" PARTITION OF {self._quoted}.records"
                    f" FOR VALUES FROM ('{_day_start(day).isoformat()}')"
                    f" TO ('{_day_start(day + timedelta(days=1)).isoformat()}')"
                )
        self._days.update(missing)

    async def partitions(self) -> list[date]:
        """Days that have a partition, oldest first."""
        rows = await self.pool.fetch(
            "SELECT c.relname FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent"
            " JOIN pg_namespace n ON n.oid = p.relnamespace"
            " WHERE n.nspname = $1 AND p.relname = 'records'",
            self.schema,
        )
        days = [datetime.strptime(r["relname"][8:], "%Y%m%d").date() for r in rows]
        return sorted(days)

    async def maintain(self, *, retention_days: int, ahead_days: int, today: date) -> list[date]:
        """Create partitions up to `ahead_days` ahead and drop those past retention.

        Returns the days whose partitions were dropped. A partition is dropped
        once its whole day is older than `retention_days` before `today`.
        Partitions of past days get their text-search index here.
        """
        await self.ensure_partitions(today + timedelta(days=n) for n in range(ahead_days + 1))
        cutoff = today - timedelta(days=retention_days)
        days = await self.partitions()
        dropped = [day for day in days if day < cutoff]
        for day in days:
            if cutoff <= day < today:
                await self._index_text(day)
        for day in dropped:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
                await conn.execute(f"DROP TABLE IF EXISTS {self._quoted}.{partition_name(day)}")
                await conn.execute(
                    f"DELETE FROM {self._quoted}.forward_pending WHERE ts >= $1 AND ts < $2",
                    _day_start(day),
                    _day_start(day + timedelta(days=1)),
                )
            self._days.discard(day)
            logger.info("dropped log partition %s", partition_name(day))
        return dropped

    async def _index_text(self, day: date) -> None:
        table = partition_name(day)
        index = f"{table}_message_trgm"
        async with self.pool.acquire() as conn:
            valid = await conn.fetchval(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = $2",
                self.schema,
                index,
            )
            if valid:
                return
            if valid is False:
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self._quoted}.{index}")
            await conn.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index}"
                f" ON {self._quoted}.{table} USING gin (message public.gin_trgm_ops)"
            )
        logger.info("built the text index of log partition %s", table)
