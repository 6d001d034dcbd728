"""La Poste / Colissimo Suivi v2 (JSON, French labels)."""

from __future__ import annotations

from typing import Any

from ..decoding import load_json
from ..events import ResultBuilder
from ..registry import Request, register
from ..times import parse_iso
from ._json import dig, items, text


@register("laposte")
def parse_laposte(request: Request, out: ResultBuilder) -> None:
    """The event list of each reply; returnCode other than 200 is an outcome."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    replies: list[Any] = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(reply, dict) for reply in replies):
        raise out.invalid("expected an object or an array of objects")

    for reply in replies:
        number = text(dig(reply, "shipment", "idShip")) or text(reply.get("idShip"))
        code = reply.get("returnCode")
        if code is not None and code != 200:
            message = text(reply.get("returnMessage")) or ""
            if code == 404:
                out.not_found(number, message, str(code))
            else:
                out.error(str(code), message, number)
            continue
        if not isinstance(reply.get("shipment"), dict):
            raise out.invalid("reply without shipment")
        for event in items(dig(reply, "shipment", "event")):
            out.event(
                tracking_number=number,
                moment=parse_iso(text(event.get("date"))),
                codes=[("event", text(event.get("code")))],
                description=text(event.get("label")),
                raw_time=text(event.get("date")),
            )
