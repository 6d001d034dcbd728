"""Shippo Tracks API status (JSON, also the track_updated webhook body)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("shippo")
def parse_shippo(request: Request, out: ResultBuilder) -> None:
    """Tracking history; coarse statuses yield to description text when it is sharper."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict) and "event" in doc:
        doc = doc["data"]
    if not isinstance(doc, dict) or "tracking_number" not in doc:
        if isinstance(doc, dict) and "detail" in doc:
            out.error(None, text(doc.get("detail")) or "")
            return
        raise out.invalid("missing tracking_number")
    number = text(doc.get("tracking_number"))
    history = items(doc.get("tracking_history"))
    if not history and doc.get("tracking_status") is None:
        out.not_found(number, "no tracking status yet")
        return

    for entry in history:
        place = entry.get("location") or {}
        location = Location(
            city=text(place.get("city")),
            region=text(place.get("state")),
            country=country_code(text(place.get("country"))),
            postal_code=text(place.get("zip")),
        )
        out.event(
            tracking_number=number,
            moment=parse_iso(text(entry.get("status_date"))),
            location=location if location.key() != "||" else None,
            codes=[("status", text(entry.get("status")))],
            description=text(entry.get("status_details")),
            carrier_event_id=text(entry.get("object_id")),
            operator=text(doc.get("carrier")),
            raw_time=text(entry.get("status_date")),
        )
