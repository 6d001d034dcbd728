"""USPS Tracking API v3 (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("usps")
def parse_usps(request: Request, out: ResultBuilder) -> None:
    """Tracking events; the GMT timestamp wins over the zone-less local one."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict):
        raise out.invalid("expected a JSON object")
    if "error" in doc and "trackingEvents" not in doc:
        error = doc["error"] if isinstance(doc["error"], dict) else {}
        out.error(text(error.get("code")), text(error.get("message")) or str(doc["error"]))
        return
    number = text(doc.get("trackingNumber"))
    if "trackingEvents" not in doc:
        raise out.invalid("missing trackingEvents")

    for scan in items(doc.get("trackingEvents")):
        local = text(scan.get("eventTimestamp"))
        moment = parse_iso(text(scan.get("GMTTimestamp"))) or parse_iso(local)
        location = Location(
            city=text(scan.get("eventCity")),
            region=text(scan.get("eventState")),
            country=country_code(text(scan.get("eventCountry"))) or "US",
            postal_code=text(scan.get("eventZIP")),
        )
        out.event(
            tracking_number=number,
            moment=moment,
            location=location,
            codes=[("event", text(scan.get("eventCode")))],
            description=text(scan.get("eventType")),
            raw_time=local,
        )
