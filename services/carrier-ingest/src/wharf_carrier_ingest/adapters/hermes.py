"""Hermes Germany shipment status (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text


@register("hermes")
def parse_hermes(request: Request, out: ResultBuilder) -> None:
    """Status entries of every shipment, keyed by Hermes' 2x2 event codes."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    shipments = dig(doc, "shipmentinfo")
    if not isinstance(shipments, list):
        for error in items(dig(doc, "errors")) or items(dig(doc, "listOfResultCodes")):
            out.error(text(error.get("code")), text(error.get("message")) or "")
        if dig(doc, "errors") or dig(doc, "listOfResultCodes"):
            return
        raise out.invalid("missing shipmentinfo list")

    for shipment in items(shipments):
        number = text(shipment.get("shipmentID"))
        for status in items(shipment.get("status")):
            unit = status.get("scanningUnit") or {}
            out.event(
                tracking_number=number,
                moment=parse_iso(text(status.get("timestamp"))),
                location=Location(
                    city=text(unit.get("city")), country=country_code(text(unit.get("countryCode")))
                ),
                codes=[("event", text(status.get("code")))],
                description=text(status.get("description")),
                raw_time=text(status.get("timestamp")),
            )
