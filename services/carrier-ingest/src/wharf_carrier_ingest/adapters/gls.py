"""GLS Track&Trace parcels (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("gls")
def parse_gls(request: Request, out: ResultBuilder) -> None:
    """Events of every parcel; offsets come as "+0200"."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict) or not isinstance(doc.get("parcels"), list):
        for error in items(doc.get("errors") if isinstance(doc, dict) else None):
            out.error(text(error.get("exitCode")), text(error.get("description")) or "")
        if isinstance(doc, dict) and doc.get("errors"):
            return
        raise out.invalid("missing parcels list")

    for parcel in items(doc["parcels"]):
        number = text(parcel.get("unitno")) or text(parcel.get("requested"))
        if text(parcel.get("status")) == "NOTFOUND":
            out.not_found(number, "parcel not found", "NOTFOUND")
            continue
        for event in items(parcel.get("events")):
            out.event(
                tracking_number=number,
                moment=parse_iso(text(event.get("eventDateTime"))),
                location=Location(
                    city=text(event.get("city")),
                    country=country_code(text(event.get("country"))),
                    postal_code=text(event.get("postalCode")),
                ),
                codes=[("event", text(event.get("code"))), ("status", text(parcel.get("status")))],
                description=text(event.get("description")),
                raw_time=text(event.get("eventDateTime")),
            )
