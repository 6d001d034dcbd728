"""Generic UN/EDIFACT IFTSTA (international multimodal status report)."""

from __future__ import annotations

import warnings
from datetime import datetime

from pydifact.exceptions import EDISyntaxError
from pydifact.segmentcollection import Interchange

from ..decoding import decode_text
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import fixed_zone

# DTM format qualifiers (code list 2379) this adapter reads.
_DTM_FORMATS = {"102": "%Y%m%d", "203": "%Y%m%d%H%M", "204": "%Y%m%d%H%M%S"}
_EVENT_DATE = {"334", "7", "11", "132"}


def _parts(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(part) for part in value]
    return [str(value)] if value is not None else []


def _dtm_value(composite: list[str]) -> datetime | None:
    """Formats 102/203/204 (local), 205 (with +HHMM) and 303 (with a zone abbreviation)."""
    if len(composite) < 2:
        return None
    value, fmt = composite[1], composite[2] if len(composite) > 2 else "203"
    try:
        if fmt == "205":
            return datetime.strptime(value, "%Y%m%d%H%M%z")
        if fmt == "303":
            zone = fixed_zone(value[12:])
            moment = datetime.strptime(value[:12], "%Y%m%d%H%M")
            return moment.replace(tzinfo=zone) if zone else None
        return datetime.strptime(value, _DTM_FORMATS[fmt])
    except (KeyError, ValueError):
        return None


@register("edifact_iftsta")
def parse_edifact_iftsta(request: Request, out: ResultBuilder) -> None:
    """One event per STS group: CNI names the consignment, DTM+334 the time, LOC the place.

    Separators come from UNA when present. A LOC code is read as a UN/LOCODE
    (country in its first two letters).
    """
    text = decode_text(out.adapter, request.payload, request.content_type).strip()
    if not text.startswith(("UNA", "UNB")):
        raise out.invalid("payload does not start with UNA or UNB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interchange = Interchange.from_str(text)
            found = list(interchange.segments)
    except (EDISyntaxError, ValueError, IndexError) as exc:
        raise out.invalid(f"malformed EDIFACT: {exc}") from exc
    if not any(s.tag == "UNH" and "IFTSTA" in _parts(s.elements[1])[:1] for s in found):
        raise out.invalid("no IFTSTA message in interchange")

    number: str | None = None
    status: dict[str, object] | None = None

    def flush() -> None:
        nonlocal status
        if status is None:
            return
        current, status = status, None
        code = current.get("code")
        out.event(
            tracking_number=number,
            moment=current.get("moment"),  # type: ignore[arg-type]
            location=current.get("location"),  # type: ignore[arg-type]
            codes=[("status", code)],  # type: ignore[list-item]
            description=current.get("text"),  # type: ignore[arg-type]
            texts=[current.get("free")],  # type: ignore[list-item]
            reason=current.get("reason"),  # type: ignore[arg-type]
            raw_time=current.get("raw"),  # type: ignore[arg-type]
        )

    for segment in found:
        elements = segment.elements
        if segment.tag in {"CNI", "UNT"}:
            flush()
            if segment.tag == "CNI":
                number = next(iter(_parts(elements[1])), None) if len(elements) > 1 else None
        elif segment.tag == "STS":
            flush()
            event = _parts(elements[1]) if len(elements) > 1 else []
            reason = _parts(elements[2]) if len(elements) > 2 else []
            status = {
                "code": event[0] if event else None,
                "text": event[3] if len(event) > 3 else None,
                "reason": (reason[3] if len(reason) > 3 else None)
                or (reason[0] if reason else None),
            }
        elif status is not None and segment.tag == "DTM":
            composite = _parts(elements[0])
            if composite and composite[0] in _EVENT_DATE:
                status["moment"] = _dtm_value(composite)
                status["raw"] = ":".join(composite)
        elif status is not None and segment.tag == "LOC":
            place = _parts(elements[1]) if len(elements) > 1 else []
            code = place[0] if place else ""
            status["location"] = Location(
                city=place[3] if len(place) > 3 and place[3] else None,
                country=country_code(code[:2]) if len(code) == 5 else None,
            )
        elif status is not None and segment.tag == "FTX":
            free = _parts(elements[3]) if len(elements) > 3 else []
            status["free"] = " ".join(free) or None
        elif status is not None and segment.tag == "RFF" and number is None:
            number = next(iter(_parts(elements[0])[1:2]), None)
    flush()
