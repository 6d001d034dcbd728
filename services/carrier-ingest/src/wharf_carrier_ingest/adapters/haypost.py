"""HayPost (Armenia) order with state histories (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("haypost")
def parse_haypost(request: Request, out: ResultBuilder) -> None:
    """Order state changes; local Yerevan times, sentinel dates ignored."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict):
        raise out.invalid("expected a JSON object")
    order = doc.get("order")
    if not isinstance(order, dict):
        message = text(doc.get("message")) or text(doc.get("title")) or ""
        if message:
            out.not_found(request.tracking_number, message)
            return
        raise out.invalid("missing order")
    number = text(order.get("trackingId"))

    for state in items(doc.get("orderStateHistories")):
        out.event(
            tracking_number=number,
            moment=parse_iso(text(state.get("createDate"))),
            location=Location(country="AM"),
            codes=[("state", text(state.get("stateId")))],
            carrier_event_id=text(state.get("id")),
            raw_time=text(state.get("createDate")),
        )
