from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wharf_common.envelope import Envelope
from wharf_common.errors import Unprocessable
from wharf_common.logs import log_context
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import ServiceSettings
from wharf_log_sink import RPC_QUEUE, SEARCH_TYPE
from wharf_log_sink.__main__ import spec as sink_spec
from wharf_log_sink.settings import LogSinkSettings

Started = Callable[[ServiceSpec, ServiceSettings], Awaitable[Runtime]]


@pytest.fixture
async def start(amqp_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Started]:
    running: list[Runtime] = []

    async def start(spec: ServiceSpec, settings: ServiceSettings) -> Runtime:
        settings.amqp_url = amqp_url
        settings.database_url = database_url
        settings.storage_url = f"file://{tmp_path}"
        rt = Runtime(spec, settings)
        await spec.setup(rt)
        await rt.connect()
        await rt.start_work()
        running.append(rt)
        return rt

    yield start
    for rt in reversed(running):
        rt.stopping.set()
        await rt.drain()
        await rt.close()


async def _search(rt: Runtime, **filters: Any) -> dict[str, Any]:
    result: dict[str, Any] = await rt.bus.call(
        RPC_QUEUE, Envelope(type=SEARCH_TYPE, body=filters), timeout=5
    )
    return result


async def test_a_services_logs_are_stored_and_searchable_over_rpc(
    start: Started, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wharf_gateway")
    sink = await start(sink_spec(), LogSinkSettings(batch_interval_ms=50))

    async def nothing(rt: Runtime) -> None:
        pass

    gateway = await start(
        ServiceSpec(name="gateway", version="test", setup=nothing, schema=None),
        ServiceSettings(service_name="gateway", log_level="INFO"),
    )
    trace = uuid.uuid4().hex
    with log_context(correlation=trace, tenant_id="tenant-a"):
        logging.getLogger("wharf_gateway.routes").info("GET /v1/logs -> 200", extra={"ms": 3})

    async with asyncio.timeout(15):
        while not (result := await _search(gateway, correlation_id=trace))["records"]:
            await asyncio.sleep(0.1)

    [record] = result["records"]
    assert record["service"] == "gateway"
    assert record["tenant"] == "tenant-a"
    assert record["message"] == "GET /v1/logs -> 200"
    assert record["fields"] == {"ms": 3}
    assert result["next_cursor"] is None
    # The sink's own records never enter the stream it consumes.
    assert not (await _search(sink, service="log-sink"))["records"]
    with pytest.raises(Unprocessable):
        await _search(gateway, level="LOUD")
