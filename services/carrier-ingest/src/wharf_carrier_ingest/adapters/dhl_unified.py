"""DHL Shipment Tracking - Unified API (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text


@register("dhl_unified", carrier="dhl")
def parse_dhl_unified(request: Request, out: ResultBuilder) -> None:
    """Events of every shipment; a problem document (status/title) is an error."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict):
        raise out.invalid("expected a JSON object")
    if "shipments" not in doc:
        if "status" in doc and ("title" in doc or "detail" in doc):
            message = text(doc.get("detail")) or text(doc.get("title")) or ""
            if doc.get("status") == 404:
                out.not_found(request.tracking_number, message, "404")
            else:
                out.error(text(doc.get("status")), message)
            return
        raise out.invalid("missing shipments")

    for shipment in items(doc.get("shipments")):
        number = text(shipment.get("id"))
        for event in items(shipment.get("events")):
            address = dig(event, "location", "address") or {}
            locality = text(address.get("addressLocality"))
            location = Location(
                city=locality.rpartition(", ")[2] if locality else None,
                country=country_code(text(address.get("countryCode"))),
                postal_code=text(address.get("postalCode")),
            )
            out.event(
                tracking_number=number,
                moment=parse_iso(text(event.get("timestamp"))),
                location=location,
                codes=[("statusCode", text(event.get("statusCode")))],
                description=text(event.get("description")),
                texts=[text(event.get("status")), text(event.get("remark"))],
                raw_time=text(event.get("timestamp")),
            )
