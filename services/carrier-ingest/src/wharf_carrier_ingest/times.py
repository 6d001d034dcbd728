"""Parsing the many ways carriers write a moment, and placing local times in a zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

_FRACTION = re.compile(r"(\.\d{6})\d+")
_OFFSET_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")
_US_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M")

# Zone abbreviations as Canada Post and others print them: fixed offsets.
ABBREVIATIONS: dict[str, timedelta] = {
    "UTC": timedelta(0),
    "GMT": timedelta(0),
    "Z": timedelta(0),
    "NST": timedelta(hours=-3, minutes=-30),
    "NDT": timedelta(hours=-2, minutes=-30),
    "AST": timedelta(hours=-4),
    "ADT": timedelta(hours=-3),
    "EST": timedelta(hours=-5),
    "EDT": timedelta(hours=-4),
    "CST": timedelta(hours=-6),
    "CDT": timedelta(hours=-5),
    "MST": timedelta(hours=-7),
    "MDT": timedelta(hours=-6),
    "PST": timedelta(hours=-8),
    "PDT": timedelta(hours=-7),
    "AKST": timedelta(hours=-9),
    "AKDT": timedelta(hours=-8),
    "HST": timedelta(hours=-10),
    "WET": timedelta(0),
    "BST": timedelta(hours=1),
    "CET": timedelta(hours=1),
    "CEST": timedelta(hours=2),
    "EET": timedelta(hours=2),
    "EEST": timedelta(hours=3),
}

# X12 time codes (data element 623): "xT" is civil time in that zone, daylight
# saving included; "xS" standard and "xD" daylight are fixed offsets.
_X12_CIVIL = {
    "ET": "America/New_York",
    "CT": "America/Chicago",
    "MT": "America/Denver",
    "PT": "America/Los_Angeles",
    "AT": "America/Anchorage",
    "HT": "Pacific/Honolulu",
    "NT": "America/St_Johns",
    "TT": "America/Halifax",
}
_X12_FIXED = {
    "ES": "EST",
    "ED": "EDT",
    "CS": "CST",
    "CD": "CDT",
    "MS": "MST",
    "MD": "MDT",
    "PS": "PST",
    "PD": "PDT",
    "AS": "AKST",
    "AD": "AKDT",
    "HS": "HST",
    "NS": "NST",
    "ND": "NDT",
    "TS": "AST",
    "TD": "ADT",
    "UT": "UTC",
    "GM": "GMT",
}


def _is_sentinel(value: datetime) -> bool:
    return value.year <= 1900


def parse_iso(text: str | None) -> datetime | None:
    """ISO-like date-time, naive or aware; None for blanks and sentinel dates.

    Accepts "Z", "+0200", a trailing " UTC", a space separator and more than
    six fractional digits (.NET ticks are truncated to microseconds).
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    if value.endswith(" UTC"):
        value = value[:-4] + "+00:00"
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    value = _FRACTION.sub(r"\1", value)
    value = _OFFSET_NO_COLON.sub(r"\1:\2", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if _is_sentinel(parsed) else parsed


def parse_us(text: str | None) -> datetime | None:
    """US-style "8/17/2021 7:11:26 PM" and "09/29/2025 07:00 AM", naive."""
    if text is None or not text.strip():
        return None
    value = " ".join(text.split())
    for fmt in _US_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def parse_any(text: str | None) -> datetime | None:
    """ISO first, then the US form."""
    return parse_iso(text) or parse_us(text)


def parse_date(text: str | None) -> date | None:
    """A date as "2024-01-20", "20240120" or "17/01/2020"; None for sentinels."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y"):
        try:
            parsed = datetime.strptime(value, fmt).date()
        except ValueError:
            continue
        return None if parsed.year <= 1900 else parsed
    return None


def parse_time(text: str | None) -> time | None:
    """A time as "14:23:22", "14:23", "071356" or "1020"."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    formats = {4: ("%H%M",), 6: ("%H%M%S",)}.get(len(value), ("%H:%M:%S", "%H:%M"))
    for fmt in formats:
        try:
            return datetime.strptime(value, fmt).time()
        except ValueError:
            continue
    return None


def combine(date_text: str | None, time_text: str | None) -> datetime | None:
    """A naive local date-time from split date and time fields (time may be absent)."""
    day = parse_date(date_text)
    if day is None:
        return None
    moment = parse_time(time_text) or time(0, 0)
    return datetime.combine(day, moment)


def fixed_zone(abbreviation: str | None) -> tzinfo | None:
    """A fixed-offset zone for an abbreviation such as EST or PDT."""
    if not abbreviation:
        return None
    offset = ABBREVIATIONS.get(abbreviation.strip().upper())
    return None if offset is None else timezone(offset, abbreviation.strip().upper())


def x12_zone(code: str | None) -> tzinfo | None:
    """The zone an X12 time code names; None for LT, blanks and unknown codes."""
    if not code:
        return None
    value = code.strip().upper()
    if value in _X12_CIVIL:
        return ZoneInfo(_X12_CIVIL[value])
    return fixed_zone(_X12_FIXED.get(value))


def localize(naive: datetime, zone: tzinfo) -> datetime:
    """Attach a zone to a naive local time and convert to UTC.

    A wall time repeated by a DST change takes its first occurrence (fold=0).
    """
    return naive.replace(tzinfo=zone).astimezone(UTC)
