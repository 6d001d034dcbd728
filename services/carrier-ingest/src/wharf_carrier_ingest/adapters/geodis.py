"""GEODIS espace client suivi d'envoi (JSON, French keys)."""

from __future__ import annotations

import re

from ..decoding import load_json
from ..events import ResultBuilder
from ..models import Location
from ..places import country_code
from ..registry import Request, register
from ..times import combine
from ._json import dig, items, text

_CENTRE = re.compile(r"^(.*?)\s*\(([A-Z]{2})\)$")


@register("geodis")
def parse_geodis(request: Request, out: ResultBuilder) -> None:
    """Tracking lines (listSuivis) with split date and time, French local time."""
    doc = load_json(out.adapter, request.payload, request.content_type)
    if not isinstance(doc, dict) or "ok" not in doc:
        raise out.invalid("missing ok flag")
    if doc["ok"] is not True:
        message = text(doc.get("texteErreur")) or ""
        out.error(text(doc.get("codeErreur")), message, request.tracking_number)
        return
    content = doc.get("contenu")
    if not isinstance(content, dict):
        out.not_found(request.tracking_number, "no shipment in reply")
        return
    number = text(content.get("noSuivi"))
    fallback_country = country_code(text(dig(content, "expediteur", "pays", "code")))

    for line in items(content.get("listSuivis")):
        code = text(line.get("codeSituationJustification"))
        centre = text(line.get("libelleCentre"))
        match = _CENTRE.match(centre or "")
        location = (
            Location(city=match.group(1), country=match.group(2))
            if match
            else Location(city=centre, country=fallback_country)
        )
        date, time = text(line.get("dateSuivi")), text(line.get("heureSuivi"))
        out.event(
            tracking_number=number,
            moment=combine(date, time),
            location=location,
            codes=[("code", code), ("situation", code.split("/")[0] if code else None)],
            description=text(line.get("libelleSuivi")),
            raw_time=f"{date} {time}",
        )
