"""TNT Express TrackResponse 3.1 (XML)."""

from __future__ import annotations

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import combine

_NOT_FOUND = {"CNF"}


@register("tnt")
def parse_tnt(request: Request, out: ResultBuilder) -> None:
    """Status data of every consignment; SummaryCode CNF means not found."""
    root = load_xml(out.adapter, request.payload)
    if root.tag != "TrackResponse":
        raise out.invalid(f"unexpected root element <{root.tag}>")
    for error in root.iter("Error"):
        out.error(xml_text(error, "Code"), xml_text(error, "Message") or "")

    for consignment in root.iter("Consignment"):
        number = xml_text(consignment, "ConsignmentNumber")
        summary = xml_text(consignment, "SummaryCode")
        if summary in _NOT_FOUND:
            out.not_found(number, "consignment not found", summary)
            continue
        for status in consignment.iter("StatusData"):
            date, time = xml_text(status, "LocalEventDate"), xml_text(status, "LocalEventTime")
            out.event(
                tracking_number=number,
                moment=combine(date, time),
                location=Location(city=xml_text(status, "DepotName")),
                codes=[("status", xml_text(status, "StatusCode"))],
                description=xml_text(status, "StatusDescription"),
                raw_time=f"{date} {time}",
            )
