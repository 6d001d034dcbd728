"""Aramex Shipping API ShipmentTrackingResponse (SOAP, WCF)."""

from __future__ import annotations

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..places import parse_place
from ..registry import Request, register
from ..times import parse_any


@register("aramex")
def parse_aramex(request: Request, out: ResultBuilder) -> None:
    """Tracking results per waybill; NonExistingWaybills are not-found outcomes."""
    root = load_xml(out.adapter, request.payload)
    response = next(root.iter("ShipmentTrackingResponse"), None)
    if response is None:
        raise out.invalid("no <ShipmentTrackingResponse> element")
    for notification in response.iter("Notification"):
        out.error(xml_text(notification, "Code"), xml_text(notification, "Message") or "")
    missing = response.find("NonExistingWaybills")
    for waybill in missing if missing is not None else []:
        out.not_found(xml_text(waybill), "waybill does not exist", "NonExistingWaybills")

    for result in response.iter("TrackingResult"):
        when = xml_text(result, "UpdateDateTime")
        out.event(
            tracking_number=xml_text(result, "WaybillNumber"),
            moment=parse_any(when),
            location=parse_place(xml_text(result, "UpdateLocation")),
            codes=[("update", xml_text(result, "UpdateCode"))],
            description=xml_text(result, "UpdateDescription"),
            texts=[xml_text(result, "Comments")],
            reason=xml_text(result, "ProblemCode"),
            raw_time=when,
        )
