"""Handlers of the routes carrier-ingest answers, and carrier payload intake.

Intake happens here, at the edge: the raw payload is verified, written to
object storage, and a command naming it goes on carrier-ingest's durable
queue; the carrier gets 202 without waiting on translation. So a carrier
burst, or carrier-ingest being slow or down, never slows the gateway, and
raw payloads (XML, EDI, Windows-1252 CSV) never cross the bus as text.

The ingest id answered is a version 7 UUID holding the time of receipt, so
its status route can tell a payload still waiting in the queue (stored, not
yet recorded by carrier-ingest) from an id that names nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import uuid_utils.compat
from aiohttp import web

from wharf_common import deadlines
from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, Unauthorized
from wharf_common.http import REQUEST_ID_KEY
from wharf_common.storage import ObjectStore
from wharf_gateway import models
from wharf_gateway.edge import Call, Edge
from wharf_gateway.routes import Handler, IngestPath

logger = logging.getLogger(__name__)

RPC_QUEUE = "wharf.carrier-ingest.rpc"
PAYLOADS_QUEUE = "wharf.carrier-ingest.payloads"
PAYLOAD_RECEIVED = "carrier.payload.received"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def carrier_handlers(edge: Edge, store: Callable[[], ObjectStore]) -> dict[str, Handler]:
    """Handlers of the carrier-ingest routes, keyed by operation id."""

    def forward(operation: str, *, status: int = 200) -> Handler:
        async def handle(call: Call) -> web.StreamResponse:
            data: dict[str, Any] = {}
            for part in (call.body, call.path, call.query):
                if part is not None:
                    data.update(part.model_dump(mode="json", exclude_none=True))
            result = await edge.call_service(RPC_QUEUE, call, operation, data)
            return web.json_response(result, status=status)

        return handle

    async def intake(call: Call) -> web.StreamResponse:
        assert call.principal is not None and call.path is not None
        carrier: str = call.path.model_dump()["carrier"]
        payload = await _read_body(call.request, edge.settings.max_body_size)
        _verify_signature(edge, carrier, call.request, payload)

        # The id carries its receipt time, so the status route finds the payload
        # from the id alone while it waits to be handled.
        # TODO(python-3.14): the standard library's uuid.uuid7.
        ingest_id = uuid_utils.compat.uuid7()
        received_at = _received_at(ingest_id)
        tenant = call.principal.tenant
        key = _payload_key(tenant, carrier, received_at, ingest_id)
        content_type = call.request.headers.get("Content-Type")
        try:
            await store().put(key, payload, content_type or "application/octet-stream")
        except Exception as exc:
            raise ServiceUnavailable("object storage is unavailable") from exc

        query = call.query.model_dump(exclude_none=True) if call.query else {}
        command = Envelope(
            type=PAYLOAD_RECEIVED,
            tenant=tenant,
            correlation_id=call.request[REQUEST_ID_KEY],
            deadline=deadlines.deadline_in(edge.settings.carrier_job_timeout),
            body={
                "ingest_id": str(ingest_id),
                "carrier": carrier,
                "payload_ref": key,
                "content_type": content_type,
                "tracking_number": query.get("tracking_number"),
                "received_at": received_at.isoformat(),
                "size": len(payload),
            },
        )
        await edge.bus.send(PAYLOADS_QUEUE, command)
        link = _ingest_link(carrier, ingest_id)
        accepted = models.IngestAccepted(
            ingest_id=ingest_id, status="accepted", links=models.IngestLinks(ingest=link)
        )
        body = accepted.model_dump(mode="json")
        return web.json_response(body, status=202, headers={"Location": link})

    async def ingest_status(call: Call) -> web.StreamResponse:
        assert call.principal is not None and isinstance(call.path, IngestPath)
        carrier, ingest_id = call.path.carrier, call.path.ingest_id
        data: dict[str, Any] = {"carrier": carrier, "ingest_id": str(ingest_id)}
        received_at = _time_of(ingest_id)
        if received_at is not None:
            key = _payload_key(call.principal.tenant, carrier, received_at, ingest_id)
            data.update(payload_ref=key, received_at=received_at.isoformat())
        result = await edge.call_service(RPC_QUEUE, call, "carrier.get_ingest", data)

        tracking = result.pop("tracking", [])
        result["links"] = {
            "ingest": _ingest_link(carrier, ingest_id),
            "tracking_events": [
                "/v1/tracking-events?" + urlencode(item, quote_via=quote) for item in tracking
            ],
        }
        answer = models.IngestStatus.model_validate(result)
        return web.json_response(answer.model_dump(mode="json"))

    return {
        "post_carriers_carrier_events": intake,
        "get_carriers_carrier_events_ingest_id": ingest_status,
        "post_shipments": forward("carrier.create_shipment", status=201),
        "get_shipments": forward("carrier.list_shipments"),
        "get_shipments_id": forward("carrier.get_shipment"),
        "get_tracking_events": forward("carrier.tracking_events"),
        "post_carrier_documents": forward("carrier.create_documents_job", status=202),
        "get_carrier_documents_id": forward("carrier.get_documents_job"),
    }


def _received_at(ingest_id: uuid.UUID) -> datetime:
    # The first 48 bits of a version 7 id are its Unix time in milliseconds.
    return _EPOCH + timedelta(milliseconds=ingest_id.int >> 80)


def _time_of(ingest_id: uuid.UUID) -> datetime | None:
    """When the gateway received an ingest, read from its id; None for an id it did not make."""
    if ingest_id.version != 7:
        return None
    try:
        return _received_at(ingest_id)
    except OverflowError:
        return None


def _payload_key(tenant: str, carrier: str, received_at: datetime, ingest_id: uuid.UUID) -> str:
    return f"{tenant}/carrier-payloads/{carrier}/{received_at:%Y/%m/%d}/{ingest_id}"


def _ingest_link(carrier: str, ingest_id: uuid.UUID) -> str:
    return f"/v1/carriers/{carrier}/events/{ingest_id}"


async def _read_body(request: web.Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    if not data:
        raise BadRequest("the payload is empty")
    return bytes(data)


def _verify_signature(edge: Edge, carrier: str, request: web.Request, payload: bytes) -> None:
    secret = edge.settings.carrier_signing_secrets.get(carrier)
    if secret is None:
        return
    sent = request.headers.get(edge.settings.carrier_signature_header, "")
    sent = sent.removeprefix("sha256=").strip().lower()
    key = secret.get_secret_value().encode()
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Unauthorized("the payload signature is missing or wrong")
