"""EasyPost Event webhook (tracker.created / tracker.updated)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text


@register("easypost")
def parse_easypost(request: Request, out: ResultBuilder) -> None:
    """Tracking details of the tracker in the event (or a bare tracker)."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        error = doc["error"]
        out.error(text(error.get("code")), text(error.get("message")) or "")
        return
    tracker = dig(doc, "result") if dig(doc, "object") == "Event" else doc
    if not isinstance(tracker, dict) or tracker.get("object") != "Tracker":
        raise out.invalid("no Tracker in payload")
    number = text(tracker.get("tracking_code"))
    operator = text(tracker.get("carrier"))

    for detail in items(tracker.get("tracking_details")):
        place = detail.get("tracking_location") or {}
        location = Location(
            city=text(place.get("city")),
            region=text(place.get("state")),
            country=country_code(text(place.get("country"))),
            postal_code=text(place.get("zip")),
        )
        out.event(
            tracking_number=number,
            moment=parse_iso(text(detail.get("datetime"))),
            location=location if location.key() != "||" else None,
            codes=[("status", text(detail.get("status")))],
            description=text(detail.get("message")),
            reason=text(detail.get("status_detail")),
            operator=operator,
            raw_time=text(detail.get("datetime")),
        )
