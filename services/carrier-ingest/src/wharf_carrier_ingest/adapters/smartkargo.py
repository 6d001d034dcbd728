"""SmartKargo air cargo tracking (JSON array)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import airport
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("smartkargo")
def parse_smartkargo(request: Request, out: ResultBuilder) -> None:
    """Air waybill events; local times with .NET 7-digit fractions, placed by airport."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if isinstance(doc, dict) and ("error" in doc or "message" in doc):
        out.error(text(doc.get("code")), text(doc.get("message")) or text(doc.get("error")) or "")
        return
    if not isinstance(doc, list):
        raise out.invalid("expected an array of events")

    for event in items(doc):
        prefix, waybill = text(event.get("prefix")), text(event.get("airWaybill"))
        station = text(event.get("eventLocation"))
        known = airport(station)
        out.event(
            tracking_number=f"{prefix}-{waybill}" if prefix and waybill else waybill,
            moment=parse_iso(text(event.get("eventDate"))),
            location=Location(city=station, country=known[0] if known else None),
            zone=known[1] if known else None,
            codes=[("event", text(event.get("eventType")))],
            description=text(event.get("description")),
            raw_time=text(event.get("eventDate")),
        )
