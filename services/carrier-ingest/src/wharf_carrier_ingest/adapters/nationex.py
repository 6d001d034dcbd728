"""Nationex shipment (JSON, bilingual French/English)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("nationex")
def parse_nationex(request: Request, out: ResultBuilder) -> None:
    """Shipment status history and parcel history, both under the shipment id."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict):
        raise out.invalid("expected a JSON object")
    if "ShipmentId" not in doc:
        message = text(doc.get("Message")) or text(doc.get("message")) or ""
        if message:
            out.not_found(request.tracking_number, message)
            return
        raise out.invalid("missing ShipmentId")
    number = text(doc.get("ShipmentId"))

    for status in items(doc.get("StatusHistories")):
        out.event(
            tracking_number=number,
            moment=parse_iso(text(status.get("StatusDate"))),
            location=Location(city=text(status.get("LastLocation")), country="CA"),
            codes=[("status", text(status.get("ShipmentStatus")))],
            description=text(status.get("ShipmentStatusFr")),
            texts=[text(status.get("ShipmentStatusEn"))],
            raw_time=text(status.get("StatusDate")),
        )
    for parcel in items(doc.get("Parcels")):
        for entry in items(parcel.get("History")):
            exception = entry.get("ExceptionId")
            out.event(
                tracking_number=number,
                moment=parse_iso(text(entry.get("ProcessedDate"))),
                location=Location(city=text(entry.get("CityDepot")), country="CA"),
                codes=[("exception", text(exception) if exception else None)],
                description=text(entry.get("DescriptionFr")),
                texts=[text(entry.get("DescriptionEn"))],
                carrier_event_id=text(entry.get("ParcelHistoryId")),
                reason=text(entry.get("DescriptionEn")),
                raw_time=text(entry.get("ProcessedDate")),
            )
