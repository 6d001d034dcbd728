"""Canada Post tracking-detail (XML)."""

from __future__ import annotations

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import combine, fixed_zone


@register("canadapost")
def parse_canadapost(request: Request, out: ResultBuilder) -> None:
    """Significant events; times carry zone abbreviations (EST, PDT...)."""
    root = load_xml(out.adapter, request.payload)
    for message in root.iter("message"):
        code = xml_text(message, "code")
        description = xml_text(message, "description") or ""
        if code == "004" or "no pin history" in description.lower():
            out.not_found(request.tracking_number, description, code)
        else:
            out.error(code, description, request.tracking_number)
    details = list(root.iter("tracking-detail"))
    if not details and not list(root.iter("message")):
        raise out.invalid("no <tracking-detail> or <messages> element")

    for detail in details:
        number = xml_text(detail, "pin")
        for occurrence in detail.iter("occurrence"):
            date, time = xml_text(occurrence, "event-date"), xml_text(occurrence, "event-time")
            abbreviation = xml_text(occurrence, "event-time-zone")
            out.event(
                tracking_number=number,
                moment=combine(date, time),
                location=Location(
                    city=xml_text(occurrence, "event-site"),
                    region=xml_text(occurrence, "event-province"),
                    country="CA",
                ),
                zone=fixed_zone(abbreviation),
                codes=[("event", xml_text(occurrence, "event-identifier"))],
                description=xml_text(occurrence, "event-description"),
                raw_time=f"{date} {time} {abbreviation or ''}".strip(),
            )
