"""AfterShip Tracking API v4 tracking (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text

_NOT_FOUND = {4004}


@register("aftership")
def parse_aftership(request: Request, out: ResultBuilder) -> None:
    """Checkpoints of the tracking; meta.code other than 200/201 is an outcome."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    code = dig(doc, "meta", "code")
    if code is None:
        raise out.invalid("missing meta.code")
    if code not in (200, 201):
        message = text(dig(doc, "meta", "message")) or ""
        if code in _NOT_FOUND:
            out.not_found(request.tracking_number, message, str(code))
        else:
            out.error(str(code), message, request.tracking_number)
        return
    tracking = dig(doc, "data", "tracking")
    if not isinstance(tracking, dict):
        raise out.invalid("missing data.tracking")
    number = text(tracking.get("tracking_number"))

    for checkpoint in items(tracking.get("checkpoints")):
        location = Location(
            city=text(checkpoint.get("city")),
            region=text(checkpoint.get("state")),
            country=country_code(text(checkpoint.get("country_iso3"))),
            postal_code=text(checkpoint.get("zip")),
        )
        out.event(
            tracking_number=number,
            moment=parse_iso(text(checkpoint.get("checkpoint_time"))),
            location=location if location.key() != "||" else None,
            codes=[
                ("subtag", text(checkpoint.get("subtag"))),
                ("tag", text(checkpoint.get("tag"))),
            ],
            description=text(checkpoint.get("message")),
            operator=text(checkpoint.get("slug")),
            raw_time=text(checkpoint.get("checkpoint_time")),
        )
