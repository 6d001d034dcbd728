"""bpost item tracking v1 (namespaced XML)."""

from __future__ import annotations

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import parse_iso


@register("bpost")
def parse_bpost(request: Request, out: ResultBuilder) -> None:
    """State changes of every itemTracking element."""
    root = load_xml(out.adapter, request.payload)
    items = [root] if root.tag == "itemTracking" else list(root.iter("itemTracking"))
    if not items:
        for error in root.iter("error"):
            out.error(xml_text(error, "code"), xml_text(error, "message") or "")
        if not list(root.iter("error")):
            raise out.invalid(f"unexpected root element <{root.tag}>")
        return

    for item in items:
        number = xml_text(item, "itemCode")
        for state in item.iter("stateInfo"):
            when = xml_text(state, "time")
            out.event(
                tracking_number=number,
                moment=parse_iso(when),
                location=Location(country="BE"),
                codes=[("state", xml_text(state, "stateCode"))],
                description=xml_text(state, "stateDescription"),
                raw_time=when,
            )
