"""Royal Mail Tracking API v2 mailpieces (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text


@register("royalmail")
def parse_royalmail(request: Request, out: ResultBuilder) -> None:
    """Events of a mail piece; the summary's status category refines coarse cases."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if isinstance(doc, dict) and "errors" in doc and "mailPieces" not in doc:
        for error in items(doc["errors"]):
            code, message = text(error.get("errorCode")), text(error.get("errorDescription")) or ""
            if code == "E1142" or "not found" in message.lower():
                out.not_found(request.tracking_number, message, code)
            else:
                out.error(code, message, request.tracking_number)
        return
    piece = dig(doc, "mailPieces")
    if not isinstance(piece, dict):
        raise out.invalid("missing mailPieces")
    number = text(dig(piece, "summary", "oneDBarcode")) or text(piece.get("mailPieceId"))
    category = text(dig(piece, "summary", "statusCategory"))

    for event in items(piece.get("events")):
        out.event(
            tracking_number=number,
            moment=parse_iso(text(event.get("eventDateTime"))),
            location=Location(city=text(event.get("locationName")), country="GB"),
            codes=[("event", text(event.get("eventCode"))), ("category", category)],
            description=text(event.get("eventName")),
            raw_time=text(event.get("eventDateTime")),
        )
