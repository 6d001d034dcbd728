"""Handlers of the routes carrier-ingest answers, and carrier payload intake.

Intake happens here, at the edge: the raw payload is verified, written to
object storage, and a command naming it goes on carrier-ingest's durable
queue; the carrier gets 202 without waiting on translation. So a carrier
burst, or carrier-ingest being slow or down, never slows the gateway, and
raw payloads (XML, EDI, Windows-1252 CSV) never cross the bus as text.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from wharf_common import deadlines
from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, Unauthorized
from wharf_common.http import REQUEST_ID_KEY
from wharf_common.storage import ObjectStore
from wharf_gateway.edge import Call, Edge
from wharf_gateway.routes import Handler

logger = logging.getLogger(__name__)

RPC_QUEUE = "wharf.carrier-ingest.rpc"
PAYLOADS_QUEUE = "wharf.carrier-ingest.payloads"
PAYLOAD_RECEIVED = "carrier.payload.received"


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

        ingest_id = uuid.uuid4()
        received_at = deadlines.now()
        tenant = call.principal.tenant
        key = f"{tenant}/carrier-payloads/{carrier}/{received_at:%Y/%m/%d}/{ingest_id}"
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
        return web.json_response({"ingest_id": str(ingest_id), "status": "accepted"}, status=202)

    return {
        "post_carriers_carrier_events": intake,
        "post_shipments": forward("carrier.create_shipment", status=201),
        "get_shipments": forward("carrier.list_shipments"),
        "get_shipments_id": forward("carrier.get_shipment"),
        "get_tracking_events": forward("carrier.tracking_events"),
        "post_carrier_documents": forward("carrier.create_documents_job", status=202),
        "get_carrier_documents_id": forward("carrier.get_documents_job"),
    }


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
