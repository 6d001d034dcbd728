"""Landmark Global TrackResponse (XML)."""

from __future__ import annotations

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..places import parse_place
from ..registry import Request, register
from ..times import parse_any


@register("landmark")
def parse_landmark(request: Request, out: ResultBuilder) -> None:
    """Package events; times are local and carry no zone."""
    root = load_xml(out.adapter, request.payload)
    if root.tag != "TrackResponse":
        raise out.invalid(f"unexpected root element <{root.tag}>")
    for error in root.iter("Error"):
        message = xml_text(error, "ErrorMessage") or xml_text(error) or ""
        if "not found" in message.lower():
            out.not_found(request.tracking_number, message, xml_text(error, "ErrorCode"))
        else:
            out.error(xml_text(error, "ErrorCode"), message, request.tracking_number)

    for package in root.iter("Package"):
        number = xml_text(package, "TrackingNumber") or xml_text(package, "LandmarkTrackingNumber")
        for event in package.iter("Event"):
            when = xml_text(event, "DateTime")
            out.event(
                tracking_number=number,
                moment=parse_any(when),
                location=parse_place(xml_text(event, "Location")),
                codes=[("event", xml_text(event, "EventCode"))],
                description=xml_text(event, "Status"),
                raw_time=when,
            )
