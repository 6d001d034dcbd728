"""DPD ParcelLifeCycleService getTrackingData (SOAP 1.1)."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from ..decoding import load_xml, xml_text
from ..events import ResultBuilder
from ..places import parse_place
from ..registry import Request, register
from ..times import parse_any


def _content(element: Element | None) -> str | None:
    """The innermost <content> text of DPD's label/content/bold wrappers."""
    if element is None:
        return None
    texts = [xml_text(node) for node in element.iter("content")]
    return next((t for t in reversed(texts) if t), None)


@register("dpd")
def parse_dpd(request: Request, out: ResultBuilder) -> None:
    """Reached status steps; the reply names no parcel, so the caller must."""
    root = load_xml(out.adapter, request.payload)
    fault = next(root.iter("Fault"), None)
    if fault is not None:
        out.error(xml_text(fault, "faultcode"), xml_text(fault, "faultstring") or "")
        return
    result = next(root.iter("trackingresult"), None)
    if result is None:
        raise out.invalid("no <trackingresult> element")
    number = xml_text(result, "shipmentInfo/parcelLabelNumber") or request.tracking_number
    steps = [s for s in result.iter("statusInfo") if xml_text(s, "statusHasBeenReached") == "true"]
    if steps and not number:
        raise out.invalid("DPD replies carry no parcel number: pass tracking_number")

    for step in steps:
        when = _content(step.find("date"))
        out.event(
            tracking_number=number,
            moment=parse_any(when),
            location=parse_place(_content(step.find("location"))),
            codes=[("status", xml_text(step, "status"))],
            description=_content(step.find("description")),
            texts=[_content(step.find("label"))],
            raw_time=when,
        )
