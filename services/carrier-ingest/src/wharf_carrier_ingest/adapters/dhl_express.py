"""DHL Express XML-PI TrackingResponse."""

from __future__ import annotations

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..models import Location
from ..places import airport, parse_place
from ..registry import Request, register
from ..times import combine


@register("dhl_express", carrier="dhl")
def parse_dhl_express(request: Request, out: ResultBuilder) -> None:
    """Shipment events per AWB, local to each event's service area."""
    root = load_xml(out.adapter, request.payload)
    if root.tag not in {"TrackingResponse", "ErrorResponse"}:
        raise out.invalid(f"unexpected root element <{root.tag}>")
    if root.tag == "ErrorResponse":
        for fault in root.iter("Condition"):
            out.error(xml_text(fault, "ConditionCode"), xml_text(fault, "ConditionData") or "")
        return

    for awb in root.iter("AWBInfo"):
        number = xml_text(awb, "AWBNumber")
        action = (xml_text(awb, "Status/ActionStatus") or "").lower()
        if action and action != "success":
            condition = awb.find("Status/Condition")
            message = xml_text(condition, "ConditionData") or action
            if "no shipments found" in action or "not found" in action:
                out.not_found(
                    number or _number_in(message), message, xml_text(condition, "ConditionCode")
                )
            else:
                out.error(xml_text(condition, "ConditionCode"), message, number)
            continue
        for event in awb.iter("ShipmentEvent"):
            area_code = xml_text(event, "ServiceArea/ServiceAreaCode")
            place = parse_place(xml_text(event, "ServiceArea/Description"))
            known = airport(area_code)
            location = Location(
                city=place.city if place else None,
                country=(place.country if place else None) or (known[0] if known else None),
            )
            date, time = xml_text(event, "Date"), xml_text(event, "Time")
            out.event(
                tracking_number=number,
                moment=combine(date, time),
                location=location,
                zone=known[1] if known else None,
                codes=[("event", xml_text(event, "ServiceEvent/EventCode"))],
                description=xml_text(event, "ServiceEvent/Description"),
                raw_time=f"{date} {time}",
            )


def _number_in(message: str) -> str | None:
    words = message.split()
    return words[-1] if words and any(ch.isdigit() for ch in words[-1]) else None
