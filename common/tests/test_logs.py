from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

from aiohttp.http_exceptions import LineTooLong
from aiohttp.web import RequestPayloadError

from wharf_common.envelope import Envelope
from wharf_common.logs import BusLogHandler, JsonFormatter, MalformedRequestFilter, log_context


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("wharf.test", level, __file__, 1, message, None, None)


def test_json_lines_carry_context_and_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("auth"))
    logger = logging.getLogger("wharf.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_context(correlation="req-1", tenant_id="t-1", message="m-1"):
            logger.warning("charged %d parcels", 3, extra={"carrier": "ups"})
    finally:
        logger.removeHandler(handler)

    line = json.loads(stream.getvalue())
    assert line["message"] == "charged 3 parcels"
    assert (line["service"], line["level"]) == ("auth", "WARNING")
    assert (line["correlation_id"], line["tenant"], line["message_id"]) == ("req-1", "t-1", "m-1")
    assert line["fields"] == {"carrier": "ups"}


async def test_records_wait_while_the_broker_is_away_and_ship_when_it_returns() -> None:
    handler = BusLogHandler("auth", capacity=100, batch_size=10)
    shipped: list[dict[str, Any]] = []
    broker_up = asyncio.Event()

    async def publish(batch: list[dict[str, Any]]) -> None:
        if not broker_up.is_set():
            raise ConnectionError("broker away")
        shipped.extend(batch)

    handler.start(publish, interval=0.02)
    for n in range(25):
        handler.emit(record(f"line {n}"))
    await asyncio.sleep(0.1)
    assert shipped == []
    assert handler.pending == 25

    broker_up.set()
    async with asyncio.timeout(5):
        while len(shipped) < 25:
            await asyncio.sleep(0.02)
    await handler.stop(publish)
    assert [r["message"] for r in shipped] == [f"line {n}" for n in range(25)]


async def test_overflow_is_counted_and_reported_once_shipping_resumes() -> None:
    handler = BusLogHandler("auth", capacity=5, batch_size=100)
    for n in range(8):
        handler.emit(record(f"line {n}"))
    assert handler.pending == 5

    shipped: list[dict[str, Any]] = []

    async def publish(batch: list[dict[str, Any]]) -> None:
        shipped.extend(batch)

    root = logging.getLogger()
    root.addHandler(handler)
    try:
        await handler.stop(publish)
    finally:
        root.removeHandler(handler)
    messages = [r["message"] for r in shipped]
    assert messages[:5] == [f"line {n}" for n in range(5)]
    assert "dropped 3 log records while the bus buffer was full" in messages


def test_envelope_tolerates_fields_it_does_not_know() -> None:
    original = Envelope(type="shipment.status_changed", body={"status": "delivered"})
    wire = json.loads(original.encode())
    wire["priority"] = "high"
    wire["schema_hint"] = {"added": "by a newer version"}

    decoded = Envelope.decode(json.dumps(wire).encode())

    assert decoded.id == original.id
    assert decoded.body == {"status": "delivered"}


def test_a_malformed_request_is_logged_as_a_warning_without_its_bytes() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    handler.addFilter(MalformedRequestFilter())
    logger = logging.getLogger("wharf.test.malformed")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise LineTooLong(b"X-API-Key: wk_marker-secret" + b" " * 70 + b"...", 8190)
        except LineTooLong as exc:
            try:
                raise RequestPayloadError(str(exc)) from exc
            except RequestPayloadError:
                logger.exception("Error handling request from %s", "127.0.0.1")
        logger.error("an unrelated error %s", "stays as it was")
    finally:
        logger.removeHandler(handler)

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "WARNING"
    assert first["message"] == "refused a malformed HTTP request: RequestPayloadError (status 400)"
    assert "exception" not in first
    assert "wk_marker-secret" not in stream.getvalue()
    assert (second["level"], second["message"]) == ("ERROR", "an unrelated error stays as it was")
