"""UPS Track API v1 (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import combine
from ._json import dig, items, text

_NOT_FOUND = {"TW0001"}


@register("ups")
def parse_ups(request: Request, out: ResultBuilder) -> None:
    """Activities of every package; warnings TW0001 are not-found replies."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if dig(doc, "response", "errors") is not None:
        for error in items(dig(doc, "response", "errors")):
            out.error(text(error.get("code")), text(error.get("message")) or "")
        return
    shipments = dig(doc, "trackResponse", "shipment")
    if not isinstance(shipments, list):
        raise out.invalid("missing trackResponse.shipment list")

    for shipment in items(shipments):
        number = text(shipment.get("inquiryNumber"))
        for warning in items(shipment.get("warnings")):
            code = text(warning.get("code"))
            if code in _NOT_FOUND:
                out.not_found(number, text(warning.get("message")) or "", code)
        for package in items(shipment.get("package")):
            tracking = text(package.get("trackingNumber"))
            if tracking in (None, "string"):
                tracking = number
            for activity in items(package.get("activity")):
                address = dig(activity, "location", "address") or {}
                location = Location(
                    city=text(address.get("city")),
                    region=text(address.get("stateProvince")),
                    country=country_code(text(address.get("countryCode"))),
                    postal_code=text(address.get("postalCode")),
                )
                status = activity.get("status") or {}
                date, time = text(activity.get("date")), text(activity.get("time"))
                out.event(
                    tracking_number=tracking,
                    moment=combine(date, time),
                    location=location,
                    codes=[("code", text(status.get("code"))), ("type", text(status.get("type")))],
                    description=text(status.get("description")),
                    raw_time=f"{date} {time}",
                )
