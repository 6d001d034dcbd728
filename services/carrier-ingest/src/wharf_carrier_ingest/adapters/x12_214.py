"""Generic X12 214 (transportation carrier shipment status) interchanges."""

from __future__ import annotations

from ..decoding import decode_text
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import combine, x12_zone
from ..x12 import element, segments


@register("x12_214")
def parse_x12_214(request: Request, out: ResultBuilder) -> None:
    """One event per AT7 status, placed by the following MS1 or the N4 of the loop.

    B10 gives the tracking number and the carrier's SCAC; AT7 gives status,
    reason, date, time and time code; MS1 gives the event city, region and
    country.
    """
    text = decode_text(out.adapter, request.payload, request.content_type)
    try:
        rows = segments(text)
    except ValueError as exc:
        raise out.invalid(str(exc)) from exc
    if not any(row[0] == "ST" and element(row, 1) == "214" for row in rows):
        raise out.invalid("no ST*214 transaction set in interchange")

    number: str | None = None
    scac: str | None = None
    pending: list[str] | None = None
    stop: Location | None = None

    def flush(place: Location | None) -> None:
        nonlocal pending
        if pending is None:
            return
        at7, pending = pending, None
        status, reason = element(at7, 1), element(at7, 2)
        date, time, code = element(at7, 5), element(at7, 6), element(at7, 7)
        out.event(
            tracking_number=number,
            moment=combine(date, time),
            location=place or stop,
            zone=x12_zone(code),
            codes=[("status", status)],
            description=f"AT7 {status}/{reason}" if reason else f"AT7 {status}",
            reason=f"status reason {reason}" if reason and reason != "NS" else None,
            operator=scac,
            raw_time=" ".join(part for part in (date, time, code) if part),
        )

    for row in rows:
        tag = row[0].strip()
        if tag == "ST":
            number, scac, stop = None, None, None
        elif tag == "B10":
            number = element(row, 1) or element(row, 2)
            scac = element(row, 3)
        elif tag == "N4":
            stop = Location(
                city=element(row, 1),
                region=element(row, 2),
                country=country_code(element(row, 4)),
                postal_code=element(row, 3),
            )
        elif tag == "AT7":
            flush(None)
            pending = row
        elif tag == "MS1":
            flush(
                Location(
                    city=element(row, 1),
                    region=element(row, 2),
                    country=country_code(element(row, 3)),
                )
            )
        elif tag in {"SE", "LX"}:
            flush(None)
