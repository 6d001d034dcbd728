from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from wharf_common.errors import BadRequest
from wharf_log_sink.db import SCHEMA, RecordStore, partition_name, to_row
from wharf_log_sink.query import LogSearch, search

from .conftest import make_record

NOW = datetime.now(UTC).replace(microsecond=0)


async def _store(store: RecordStore, *records: dict[str, Any]) -> None:
    await store.write([to_row(record) for record in records])


def _at(minutes_ago: int, **overrides: Any) -> dict[str, Any]:
    return make_record(ts=(NOW - timedelta(minutes=minutes_ago)).isoformat(), **overrides)


async def _messages(pool: asyncpg.Pool, **filters: Any) -> list[str]:
    result = await search(pool, LogSearch(**filters))
    return [record["message"] for record in result["records"]]


async def test_each_filter_narrows_the_search(pool: asyncpg.Pool, store: RecordStore) -> None:
    await _store(
        store,
        _at(1, message="auth token issued", service="auth", tenant="t1", level="INFO"),
        _at(2, message="render failed", service="documents", tenant="t2", level="ERROR"),
        _at(3, message="carrier feed late", service="carrier-ingest", tenant="t1", level="WARNING"),
        _at(4, message="debug detail", service="auth", tenant=None, level="DEBUG"),
        _at(90, message="old news", service="gateway", tenant="t2", level="INFO"),
    )

    assert await _messages(pool, service="auth") == ["auth token issued", "debug detail"]
    assert await _messages(pool, level="WARNING") == ["render failed", "carrier feed late"]
    assert await _messages(pool, tenant="t2") == ["render failed", "old news"]
    assert await _messages(pool, since=NOW - timedelta(minutes=60)) == [
        "auth token issued",
        "render failed",
        "carrier feed late",
        "debug detail",
    ]
    assert await _messages(pool, until=NOW - timedelta(minutes=3)) == ["debug detail", "old news"]
    assert await _messages(pool, text="FAILED") == ["render failed"]
    assert await _messages(pool, text="50%") == []
    assert await _messages(pool, service="auth", level="INFO", tenant="t1") == ["auth token issued"]


async def test_one_correlation_id_traces_a_request_across_three_services(
    pool: asyncpg.Pool, store: RecordStore
) -> None:
    trace = uuid.uuid4().hex
    await _store(
        store,
        _at(5, service="gateway", correlation_id=trace, message="POST /v1/documents -> 202"),
        _at(4, service="documents", correlation_id=trace, message="handled document.render"),
        _at(3, service="webhooks", correlation_id=trace, message="delivered document.rendered"),
        _at(4, service="documents", message="someone else's render"),
    )

    result = await search(pool, LogSearch(correlation_id=trace))

    assert [(r["service"], r["message"]) for r in reversed(result["records"])] == [
        ("gateway", "POST /v1/documents -> 202"),
        ("documents", "handled document.render"),
        ("webhooks", "delivered document.rendered"),
    ]


async def test_pages_follow_the_cursor_newest_first(pool: asyncpg.Pool, store: RecordStore) -> None:
    # Several records share a timestamp, so the cursor must order by id as well.
    await _store(store, *(_at(i // 3, message=f"m{i}") for i in range(25)))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        result = await search(pool, LogSearch(limit=10, cursor=cursor))
        seen += [record["ts"] + record["id"] for record in result["records"]]
        pages += 1
        cursor = result["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert seen == sorted(seen, reverse=True)


async def test_limit_is_capped_and_bad_input_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError):
        LogSearch(limit=100_000)
    with pytest.raises(ValidationError):
        LogSearch(level="LOUD")  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as backwards:
        LogSearch(since=NOW, until=NOW - timedelta(hours=1))
    assert [error["loc"] for error in backwards.value.errors()] == [("until",)]
    with pytest.raises(ValidationError):
        LogSearch(since=datetime(2026, 1, 1))  # no time zone
    with pytest.raises(BadRequest):
        await search(pool, LogSearch(cursor="bm90IGEgY3Vyc29y"))
    result = await search(pool, LogSearch(limit=500), max_limit=50)
    assert result == {"records": [], "next_cursor": None}


async def test_retention_drops_old_partitions_and_indexes_past_days(
    pool: asyncpg.Pool, store: RecordStore
) -> None:
    today = date(2026, 3, 20)
    old = datetime(2026, 3, 1, 12, tzinfo=UTC)
    yesterday = datetime(2026, 3, 19, 12, tzinfo=UTC)
    await _store(
        store,
        make_record(ts=old.isoformat(), message="expired"),
        make_record(ts=yesterday.isoformat(), message="kept"),
    )

    dropped = await store.maintain(retention_days=7, ahead_days=2, today=today)

    assert dropped == [old.date()]
    days = await store.partitions()
    assert days == [yesterday.date(), today, today + timedelta(days=1), today + timedelta(days=2)]
    assert await _messages(pool) == ["kept"]
    indexes = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND indexname LIKE '%trgm'",
        SCHEMA,
    )
    assert [r["indexname"] for r in indexes] == [f"{partition_name(yesterday.date())}_message_trgm"]
    # A record for a day without a partition yet still lands.
    await _store(store, make_record(ts=(NOW + timedelta(days=5)).isoformat(), message="ahead"))
    assert "ahead" in await _messages(pool)
