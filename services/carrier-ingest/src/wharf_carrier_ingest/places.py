"""Place names to ISO countries and IANA zones, for the cases a payload lets us derive."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from zoneinfo import ZoneInfo

from .models import Location

# Countries that keep one civil time everywhere (or nearly so, for the places
# carriers scan in). Countries with several zones are resolved by region only.
COUNTRY_ZONES: dict[str, str] = {
    "AM": "Asia/Yerevan",
    "AT": "Europe/Vienna",
    "BE": "Europe/Brussels",
    "BG": "Europe/Sofia",
    "CH": "Europe/Zurich",
    "CN": "Asia/Shanghai",
    "CZ": "Europe/Prague",
    "DE": "Europe/Berlin",
    "DK": "Europe/Copenhagen",
    "EE": "Europe/Tallinn",
    "ES": "Europe/Madrid",
    "FI": "Europe/Helsinki",
    "FR": "Europe/Paris",
    "GB": "Europe/London",
    "GR": "Europe/Athens",
    "HK": "Asia/Hong_Kong",
    "HR": "Europe/Zagreb",
    "HU": "Europe/Budapest",
    "IE": "Europe/Dublin",
    "IL": "Asia/Jerusalem",
    "IN": "Asia/Kolkata",
    "IT": "Europe/Rome",
    "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul",
    "LT": "Europe/Vilnius",
    "LU": "Europe/Luxembourg",
    "LV": "Europe/Riga",
    "NL": "Europe/Amsterdam",
    "NO": "Europe/Oslo",
    "NZ": "Pacific/Auckland",
    "PL": "Europe/Warsaw",
    "PT": "Europe/Lisbon",
    "RO": "Europe/Bucharest",
    "SA": "Asia/Riyadh",
    "SE": "Europe/Stockholm",
    "SG": "Asia/Singapore",
    "SI": "Europe/Ljubljana",
    "SK": "Europe/Bratislava",
    "TR": "Europe/Istanbul",
    "TW": "Asia/Taipei",
    "AE": "Asia/Dubai",
    "JO": "Asia/Amman",
    "EG": "Africa/Cairo",
    "ZA": "Africa/Johannesburg",
    "MA": "Africa/Casablanca",
    "TH": "Asia/Bangkok",
    "MY": "Asia/Kuala_Lumpur",
    "PH": "Asia/Manila",
    "VN": "Asia/Ho_Chi_Minh",
}

REGION_ZONES: dict[tuple[str, str], str] = {
    # United States: the zone most of each state keeps.
    **{
        ("US", s): "America/New_York"
        for s in (
            [
                "CT",
                "DE",
                "DC",
                "FL",
                "GA",
                "IN",
                "KY",
                "ME",
                "MD",
                "MA",
                "MI",
                "NH",
                "NJ",
                "NY",
                "NC",
                "OH",
                "PA",
                "RI",
                "SC",
                "VT",
                "VA",
                "WV",
            ]
        )
    },
    **{
        ("US", s): "America/Chicago"
        for s in (
            [
                "AL",
                "AR",
                "IL",
                "IA",
                "KS",
                "LA",
                "MN",
                "MS",
                "MO",
                "NE",
                "ND",
                "OK",
                "SD",
                "TN",
                "TX",
                "WI",
            ]
        )
    },
    **{("US", s): "America/Denver" for s in ["CO", "MT", "NM", "UT", "WY", "ID"]},
    ("US", "AZ"): "America/Phoenix",
    **{("US", s): "America/Los_Angeles" for s in ["CA", "NV", "OR", "WA"]},
    ("US", "AK"): "America/Anchorage",
    ("US", "HI"): "Pacific/Honolulu",
    ("US", "PR"): "America/Puerto_Rico",
    # Canada.
    ("CA", "BC"): "America/Vancouver",
    ("CA", "AB"): "America/Edmonton",
    ("CA", "SK"): "America/Regina",
    ("CA", "MB"): "America/Winnipeg",
    ("CA", "ON"): "America/Toronto",
    ("CA", "QC"): "America/Toronto",
    ("CA", "NB"): "America/Moncton",
    ("CA", "NS"): "America/Halifax",
    ("CA", "PE"): "America/Halifax",
    ("CA", "NL"): "America/St_Johns",
    ("CA", "YT"): "America/Whitehorse",
    ("CA", "NT"): "America/Yellowknife",
    ("CA", "NU"): "America/Iqaluit",
    # Australia.
    ("AU", "NSW"): "Australia/Sydney",
    ("AU", "ACT"): "Australia/Sydney",
    ("AU", "VIC"): "Australia/Melbourne",
    ("AU", "QLD"): "Australia/Brisbane",
    ("AU", "SA"): "Australia/Adelaide",
    ("AU", "WA"): "Australia/Perth",
    ("AU", "TAS"): "Australia/Hobart",
    ("AU", "NT"): "Australia/Darwin",
}

# Cities seen without a country, mapped to (ISO country, zone).
CITY_ZONES: dict[str, tuple[str, str]] = {
    "north shields": ("GB", "Europe/London"),
    "feltham": ("GB", "Europe/London"),
    "bradford": ("GB", "Europe/London"),
    "london": ("GB", "Europe/London"),
    "stafford do": ("GB", "Europe/London"),
    "machelen": ("BE", "Europe/Brussels"),
    "arnhem hub": ("NL", "Europe/Amsterdam"),
    "nuernberg": ("DE", "Europe/Berlin"),
    "nuernberg hub": ("DE", "Europe/Berlin"),
    "endingen am kaiserstuhl": ("DE", "Europe/Berlin"),
    "pamplona": ("ES", "Europe/Madrid"),
    "st-hubert": ("CA", "America/Toronto"),
    "blainville": ("CA", "America/Toronto"),
    "montreal": ("CA", "America/Toronto"),
}

# IATA airport codes (air cargo and DHL service areas).
AIRPORTS: dict[str, tuple[str, str]] = {
    "LHR": ("GB", "Europe/London"),
    "LGW": ("GB", "Europe/London"),
    "TLS": ("FR", "Europe/Paris"),
    "CDG": ("FR", "Europe/Paris"),
    "BCN": ("ES", "Europe/Madrid"),
    "MAD": ("ES", "Europe/Madrid"),
    "LEJ": ("DE", "Europe/Berlin"),
    "FRA": ("DE", "Europe/Berlin"),
    "BGY": ("IT", "Europe/Rome"),
    "MIL": ("IT", "Europe/Rome"),
    "MXP": ("IT", "Europe/Rome"),
    "SIN": ("SG", "Asia/Singapore"),
    "HKG": ("HK", "Asia/Hong_Kong"),
    "AMS": ("NL", "Europe/Amsterdam"),
    "BRU": ("BE", "Europe/Brussels"),
    "JFK": ("US", "America/New_York"),
    "ORD": ("US", "America/Chicago"),
    "LAX": ("US", "America/Los_Angeles"),
    "DXB": ("AE", "Asia/Dubai"),
}

COUNTRY_NAMES: dict[str, str] = {
    "armenia": "AM",
    "jordan": "JO",
    "australia": "AU",
    "austria": "AT",
    "belgium": "BE",
    "belgique": "BE",
    "canada": "CA",
    "china": "CN",
    "france": "FR",
    "germany": "DE",
    "deutschland": "DE",
    "hong kong": "HK",
    "ireland": "IE",
    "italy": "IT",
    "italia": "IT",
    "japan": "JP",
    "netherlands": "NL",
    "nederland": "NL",
    "new zealand": "NZ",
    "poland": "PL",
    "portugal": "PT",
    "singapore": "SG",
    "spain": "ES",
    "espana": "ES",
    "sweden": "SE",
    "switzerland": "CH",
    "united kingdom": "GB",
    "great britain": "GB",
    "united states": "US",
    "united states of america": "US",
    "usa": "US",
    "united arab emirates": "AE",
    "uk": "GB",
}

ISO3: dict[str, str] = {
    "ARM": "AM",
    "AUS": "AU",
    "AUT": "AT",
    "BEL": "BE",
    "BRA": "BR",
    "CAN": "CA",
    "CHE": "CH",
    "CHN": "CN",
    "DEU": "DE",
    "DNK": "DK",
    "ESP": "ES",
    "FIN": "FI",
    "FRA": "FR",
    "GBR": "GB",
    "GRC": "GR",
    "HKG": "HK",
    "IRL": "IE",
    "ITA": "IT",
    "JPN": "JP",
    "LUX": "LU",
    "NLD": "NL",
    "NOR": "NO",
    "NZL": "NZ",
    "POL": "PL",
    "PRT": "PT",
    "SGP": "SG",
    "SWE": "SE",
    "USA": "US",
    "ARE": "AE",
}

_ISO2 = re.compile(r"^[A-Z]{2}$")
_AU_STATES = frozenset({"NSW", "ACT", "VIC", "QLD", "SA", "WA", "TAS", "NT"})


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split()).lower()


def country_code(value: str | None) -> str | None:
    """ISO alpha-2 code for a code or English/local country name, if recognisable."""
    if not value:
        return None
    text = value.strip()
    upper = text.upper()
    if upper == "UK":
        return "GB"
    if _ISO2.match(upper) and (upper in COUNTRY_ZONES or upper in {"US", "CA", "AU", "BR"}):
        return upper
    if upper in ISO3:
        return ISO3[upper]
    return COUNTRY_NAMES.get(_fold(text))


def parse_place(text: str | None) -> Location | None:
    """Best-effort Location from a carrier's one-line place text.

    Understands "City, CC", "City (CC)", "City - Country", "CITY QLD" and a
    bare country; anything else is kept as the city.
    """
    if text is None or not text.strip():
        return None
    value = " ".join(text.split())
    match = re.match(r"^(.*?)\s*\(([^)]+)\)$", value)
    if match and country_code(match.group(2)):
        return Location(city=match.group(1) or None, country=country_code(match.group(2)))
    for separator in (" - ", ", "):
        if separator in value:
            head, _, tail = value.rpartition(separator)
            country = country_code(tail)
            if country:
                return Location(city=head.strip() or None, country=country)
            if separator == ", " and head and re.fullmatch(r"[A-Z]{2,3}", tail):
                return Location(city=head, region=tail)
    words = value.split(" ")
    if len(words) > 1 and words[-1] in _AU_STATES:
        return Location(city=" ".join(words[:-1]), region=words[-1], country="AU")
    country = country_code(value)
    if country:
        return Location(country=country)
    city = CITY_ZONES.get(_fold(value))
    return Location(city=value, country=city[0] if city else None)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_for(location: Location | None) -> ZoneInfo | None:
    """The zone of a location when the city, region or country settles it."""
    if location is None:
        return None
    if location.city:
        city = CITY_ZONES.get(_fold(location.city))
        if city and (location.country in (None, city[0])):
            return _zone(city[1])
    if location.country and location.region:
        region = REGION_ZONES.get((location.country, location.region.upper()))
        if region:
            return _zone(region)
    if location.country in COUNTRY_ZONES:
        return _zone(COUNTRY_ZONES[location.country])
    return None


def airport(code: str | None) -> tuple[str, ZoneInfo] | None:
    """Country and zone of an IATA airport or DHL service-area code we know."""
    if not code:
        return None
    found = AIRPORTS.get(code.strip().upper())
    return (found[0], _zone(found[1])) if found else None
