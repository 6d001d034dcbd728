"""Royal Mail-style header/detail CSV: H rows carry the time, D rows the items."""

from __future__ import annotations

import re

from ..decoding import csv_rows
from ..events import ResultBuilder
from ..models import Location
from ..registry import Request, register
from ..times import combine

_POSTCODE = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})\b")


@register("royalmail_csv", carrier="royalmail", table="royalmail")
def parse_royalmail_csv(request: Request, out: ResultBuilder) -> None:
    """Each D row is one event at the time of the H row before it with the same batch."""
    rows = csv_rows(out.adapter, request.payload, request.content_type)
    if not rows:
        raise out.invalid("empty CSV")
    headers: dict[str, tuple[str, str]] = {}

    for line, row in enumerate(rows, start=1):
        kind = row[0].strip().upper()
        if kind == "H":
            if len(row) < 4:
                raise out.invalid(f"line {line}: H row needs batch, date and time")
            headers[row[1].strip()] = (row[2].strip(), row[3].strip())
        elif kind == "D":
            if len(row) < 7:
                raise out.invalid(f"line {line}: D row needs 7 fields, got {len(row)}")
            batch = row[1].strip()
            if batch not in headers:
                raise out.invalid(f"line {line}: D row for batch {batch} before its H row")
            date, time = headers[batch]
            place = row[5].strip()
            postcode = _POSTCODE.search(place)
            out.event(
                tracking_number=row[2],
                moment=combine(date, time),
                location=Location(
                    city=place or None,
                    country="GB",
                    postal_code=postcode.group(1) if postcode else None,
                ),
                codes=[("event", row[6])],
                description=row[3] or None,
                raw_time=f"{date} {time}",
            )
        else:
            raise out.invalid(f"line {line}: unknown record type {row[0]!r}")
