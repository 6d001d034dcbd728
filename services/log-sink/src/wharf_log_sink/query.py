"""Searching stored records: the ``logs.search`` RPC and its request model.

The result of a search is ``{"records": [...], "next_cursor": str | None}``,
newest first. Each record has ``id`` (hex), ``ts`` (ISO 8601, UTC),
``level`` (name), ``service``, ``logger``, ``message``, ``correlation_id``,
``tenant``, ``message_id``, ``fields`` (object or null) and ``exception``
(text or null). Pass ``next_cursor`` back as ``cursor`` for the next page;
it is null on the last page.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from wharf_common.db import quote_schema
from wharf_common.errors import BadRequest
from wharf_log_sink.db import LEVELS, SCHEMA, level_name

RPC_QUEUE = "wharf.log-sink.rpc"
SEARCH_TYPE = "logs.search"
MAX_LIMIT = 1000

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LogSearch(BaseModel):
    """A log search: every filter given must match.

    `level` is the minimum level; `since` is inclusive and `until` exclusive;
    `text` matches a substring of the message, case-insensitively.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    service: str | None = Field(default=None, min_length=1, max_length=100)
    level: Level | None = None
    tenant: str | None = Field(default=None, min_length=1, max_length=200)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=200)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    text: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=200)

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        # On the field, not the model, so the 422 names the parameter.
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError("until must be after since")
        return until


def encode_cursor(ts: datetime, record_id: uuid.UUID) -> str:
    """An opaque cursor that resumes a search after the record (ts, id)."""
    raw = json.dumps([ts.isoformat(), record_id.hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Read a cursor made by `encode_cursor`; raise BadRequest when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, record_id = json.loads(raw)
        position = datetime.fromisoformat(ts), uuid.UUID(hex=record_id)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("invalid cursor") from None
    if position[0].tzinfo is None:
        raise BadRequest("invalid cursor")
    return position


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def build_query(
    search: LogSearch, *, schema: str = SCHEMA, max_limit: int = MAX_LIMIT
) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of `search`."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if search.service:
        where.append(f"service = {arg(search.service)}")
    if search.level:
        where.append(f"level >= {arg(LEVELS[search.level])}")
    if search.tenant:
        where.append(f"tenant = {arg(search.tenant)}")
    if search.correlation_id:
        where.append(f"correlation_id = {arg(search.correlation_id)}")
    if search.since:
        where.append(f"ts >= {arg(search.since)}")
    if search.until:
        where.append(f"ts < {arg(search.until)}")
    if search.text:
        where.append(f"message ILIKE {arg(_like_pattern(search.text))}")
    if search.cursor:
        ts, record_id = decode_cursor(search.cursor)
        where.append(f"(ts, id) < ({arg(ts)}, {arg(record_id)})")
    limit = min(search.limit, max_limit)
    sql = (
        "SELECT ts, id, level, service, logger, message, correlation_id, tenant, message_id,"
        f" fields, exception FROM {quote_schema(schema)}.records"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY ts DESC, id DESC LIMIT {arg(limit + 1)}"
    )
    return sql, args


def _record(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"].hex,
        "ts": row["ts"].isoformat(),
        "level": level_name(row["level"]),
        "service": row["service"],
        "logger": row["logger"],
        "message": row["message"],
        "correlation_id": row["correlation_id"],
        "tenant": row["tenant"],
        "message_id": row["message_id"],
        "fields": json.loads(row["fields"]) if row["fields"] else None,
        "exception": row["exception"],
    }


async def search(
    pool: asyncpg.Pool, request: LogSearch, *, schema: str = SCHEMA, max_limit: int = MAX_LIMIT
) -> dict[str, Any]:
    """Run one page of a search; see the module docstring for the result's shape."""
    sql, args = build_query(request, schema=schema, max_limit=max_limit)
    rows = await pool.fetch(sql, *args)
    limit = min(request.limit, max_limit)
    page = rows[:limit]
    cursor = encode_cursor(page[-1]["ts"], page[-1]["id"]) if len(rows) > limit else None
    return {"records": [_record(row) for row in page], "next_cursor": cursor}
