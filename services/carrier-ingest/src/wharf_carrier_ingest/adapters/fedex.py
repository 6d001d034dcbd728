"""FedEx Track API v1 (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text

_NOT_FOUND = {"TRACKING.TRACKINGNUMBER.NOTFOUND"}


@register("fedex")
def parse_fedex(request: Request, out: ResultBuilder) -> None:
    """Scan events of every track result; an errors envelope gives no events."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    for error in items(dig(doc, "errors")):
        out.error(text(error.get("code")), text(error.get("message")) or "")
    results = dig(doc, "output", "completeTrackResults")
    if results is None:
        if not dig(doc, "errors"):
            raise out.invalid("neither output.completeTrackResults nor errors present")
        return

    for complete in items(results):
        for result in items(complete.get("trackResults")):
            number = text(dig(result, "trackingNumberInfo", "trackingNumber")) or text(
                complete.get("trackingNumber")
            )
            failure = result.get("error")
            if isinstance(failure, dict):
                code = text(failure.get("code"))
                if code in _NOT_FOUND:
                    out.not_found(number, text(failure.get("message")) or "", code)
                else:
                    out.error(code, text(failure.get("message")) or "", number)
                continue
            for scan in items(result.get("scanEvents")):
                place = scan.get("scanLocation") or {}
                location = Location(
                    city=text(place.get("city")),
                    region=text(place.get("stateOrProvinceCode")),
                    country=country_code(text(place.get("countryCode"))),
                    postal_code=text(place.get("postalCode")),
                )
                out.event(
                    tracking_number=number,
                    moment=parse_iso(text(scan.get("date"))),
                    location=location if location.key() != "||" else None,
                    codes=[("event", text(scan.get("eventType")))],
                    description=text(scan.get("eventDescription")),
                    reason=text(scan.get("exceptionDescription")),
                    raw_time=text(scan.get("date")),
                )
