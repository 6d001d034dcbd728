"""The log sink's setup: the batching consumer, search RPC, maintenance, forwarding."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest
from wharf_log_sink.db import SCHEMA, RecordStore
from wharf_log_sink.query import RPC_QUEUE, SEARCH_TYPE, LogSearch, search
from wharf_log_sink.settings import LogSinkSettings
from wharf_log_sink.sink import LogSink

if TYPE_CHECKING:
    from wharf_common.runtime import Runtime

logger = logging.getLogger(__name__)


def _settings(rt: Runtime) -> LogSinkSettings:
    settings = rt.settings
    if not isinstance(settings, LogSinkSettings):
        settings = LogSinkSettings.model_validate(settings.model_dump())
    return settings


async def setup(rt: Runtime) -> None:
    """Register the log sink's work on the runtime."""
    settings = _settings(rt)
    stores: list[RecordStore] = []

    def store() -> RecordStore:
        if not stores:
            stores.append(RecordStore(rt.db, forward=settings.cloudwatch_enabled))
        return stores[0]

    async def maintain() -> None:
        while True:
            dropped = await store().maintain(
                retention_days=settings.retention_days,
                ahead_days=settings.partitions_ahead,
                today=datetime.now(UTC).date(),
            )
            if dropped:
                logger.info("retention dropped %d log partitions", len(dropped))
            await asyncio.sleep(settings.maintenance_interval)

    async def consume() -> None:
        sink = LogSink(
            rt.bus,
            store(),
            prefetch=settings.sink_prefetch,
            batch_records=settings.batch_records,
            batch_interval=settings.batch_interval_ms / 1000,
            writers=settings.sink_writers,
        )
        await sink.start()
        try:
            await asyncio.Event().wait()
        finally:
            await sink.stop(timeout=min(10.0, settings.stop_timeout))

    async def answer(envelope: Envelope) -> Any:
        if envelope.type != SEARCH_TYPE:
            raise BadRequest(f"unknown request type {envelope.type!r}")
        request = LogSearch.model_validate(envelope.body or {})
        return await search(rt.db, request, schema=SCHEMA, max_limit=settings.search_max_limit)

    rt.add_task("log-maintenance", maintain)
    rt.add_task("log-sink", consume)
    rt.serve_rpc(RPC_QUEUE, answer)
    if settings.cloudwatch_enabled:
        from wharf_log_sink.cloudwatch import Forwarder

        async def forward() -> None:
            forwarder = Forwarder.from_settings(rt.db, settings)
            await forwarder.run(interval=settings.cloudwatch_interval)

        rt.add_task("cloudwatch-forwarder", forward)
