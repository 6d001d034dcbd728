"""Australia Post Track API (JSON)."""

from __future__ import annotations

from ..decoding import load_json
from ..events import ResultBuilder
from ..places import parse_place
from ..registry import Request, register
from ..times import parse_iso
from ._json import items, text


@register("australiapost")
def parse_australiapost(request: Request, out: ResultBuilder) -> None:
    """Events of every item of every tracking result; per-result errors are kept."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    results = doc.get("tracking_results") if isinstance(doc, dict) else None
    if not isinstance(results, list):
        raise out.invalid("missing tracking_results list")

    for result in items(results):
        number = text(result.get("tracking_id"))
        for error in items(result.get("errors")):
            code, message = text(error.get("code")), text(error.get("message")) or ""
            if code in {"ESB-10001", "404"} or "invalid tracking" in message.lower():
                out.not_found(number, message, code)
            else:
                out.error(code, message, number)
        for trackable in items(result.get("trackable_items")):
            for item in items(trackable.get("items")) or [trackable]:
                article = text(item.get("article_id")) or number
                for event in items(item.get("events")):
                    out.event(
                        tracking_number=article,
                        moment=parse_iso(text(event.get("date"))),
                        location=parse_place(text(event.get("location"))),
                        description=text(event.get("description")),
                        raw_time=text(event.get("date")),
                    )
