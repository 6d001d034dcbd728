"""Sendle tracking (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..places import parse_place
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("sendle")
def parse_sendle(request: Request, out: ResultBuilder) -> None:
    """Tracking events; scan_time (UTC) is authoritative over local and display times."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict):
        raise out.invalid("expected a JSON object")
    if "tracking_events" not in doc:
        if "error" in doc:
            message = text(doc.get("error_description")) or text(doc.get("error")) or ""
            if text(doc.get("error")) == "not_found":
                out.not_found(request.tracking_number, message, "not_found")
            else:
                out.error(text(doc.get("error")), message, request.tracking_number)
            return
        raise out.invalid("missing tracking_events")
    number = text(doc.get("sendle_reference")) or request.tracking_number
    if not number:
        raise out.invalid("Sendle replies carry no reference here: pass tracking_number")

    for event in items(doc["tracking_events"]):
        when = text(event.get("scan_time")) or text(event.get("display_time"))
        out.event(
            tracking_number=number,
            moment=parse_iso(when),
            location=parse_place(text(event.get("location"))),
            codes=[("event", text(event.get("event_type")))],
            description=text(event.get("description")),
            reason=text(event.get("reason")),
            raw_time=when,
        )
