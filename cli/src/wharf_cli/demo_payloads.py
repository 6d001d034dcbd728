"""Carrier payloads for the demo: its own examples, or every file of a folder."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

# The payload formats carrier-ingest reads, each with the kind of file it is;
# a test keeps the names equal to carrier-ingest's adapters.
FORMATS = {
    "aftership": "json", "aramex": "xml", "australiapost": "json", "bpost": "xml",
    "canadapost": "xml", "dhl_express": "xml", "dhl_unified": "json", "dpd": "xml",
    "easypost": "json", "edifact_iftsta": "edi", "fedex": "json", "geodis": "json",
    "gls": "json", "haypost": "json", "hermes": "json", "landmark": "xml", "laposte": "json",
    "nationex": "json", "royalmail": "json", "royalmail_csv": "csv", "sendle": "json",
    "shippo": "json", "smartkargo": "json", "tnt": "xml", "ups": "json", "usps": "json",
    "x12_214": "edi",
}  # fmt: skip
# Formats whose events carrier-ingest files under another carrier's name: a
# shipment that should get them is that carrier's.
_FILED_UNDER = {"royalmail_csv": "royalmail", "dhl_express": "dhl", "dhl_unified": "dhl"}
# Formats whose payloads may not name their parcel: the poster names it with
# ?tracking_number= (DPD's replies never do; Sendle's only in sendle_reference).
NAMED_BY_POSTER = frozenset({"dpd", "sendle"})

_KINDS = {".json": "json", ".xml": "xml", ".csv": "csv", ".edi": "edi", ".txt": "edi"}
_CONTENT_TYPES = {
    "json": "application/json",
    "xml": "text/xml",
    "csv": "text/csv",
    "edi": "text/plain",
}
# A value next to a key that names a parcel: how the demo finds shipments in a foreign file.
_NUMBER_NEAR_KEY = re.compile(
    r"(?i)(?:tracking_?number|trackingnumber|waybill(?:number)?|awb(?:number)?|barcode|"
    r"parcel_?(?:label_?)?number|sendle_reference|itemid|mailpieceid)[\"']?\s*[:=>]\s*[\"']?"
    r"([A-Z0-9][A-Z0-9-]{5,34})\b"
)
_MAX_NUMBERS_PER_FILE = 5


class NotAPayload(Exception):
    """A file the demo cannot post as any carrier format; the message says why."""


@dataclass(frozen=True)
class Payload:
    """One file to post to ``/v1/carriers/{carrier}/events`` and the shipments it is about."""

    name: str
    carrier: str
    content_type: str
    body: bytes
    shipments: list[tuple[str, str]] = field(default_factory=list)
    # Sent as ?tracking_number= for a format whose payloads may not name the parcel.
    tracking_number: str | None = None


def own_payloads() -> list[Payload]:
    """The demo's own examples, in FedEx JSON, Aramex SOAP and Royal Mail CSV."""
    data = resources.files("wharf_cli").joinpath("demo_data")
    manifest = json.loads(data.joinpath("manifest.json").read_text("utf-8"))
    return [
        Payload(
            name=entry["file"],
            carrier=entry["carrier"],
            content_type=entry["content_type"],
            body=data.joinpath(entry["file"]).read_bytes(),
            shipments=[(carrier, number) for carrier, number in entry["shipments"]],
        )
        for entry in manifest["payloads"]
    ]


def carrier_for(path: Path, head: bytes) -> str:
    """The format a file is in, from its name, its suffix and, for EDI, its first bytes.

    The name starts with a format, and the suffix must be that format's kind
    of file, or name a variant of it (``royalmail_*.csv`` is ``royalmail_csv``);
    EDI is told apart by content. Raises NotAPayload with the reason otherwise.
    """
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise NotAPayload(f"no carrier format is a {path.suffix or 'suffix-less'} file")
    if path.suffix.lower() == ".edi":
        text = head.lstrip()
        if text.startswith(b"ISA"):
            return "x12_214"
        if text.startswith((b"UNA", b"UNB")):
            return "edifact_iftsta"
        raise NotAPayload("an .edi file that is neither X12 nor EDIFACT")
    stem = path.stem.lower()
    matches = [name for name in FORMATS if stem == name or stem.startswith(name + "_")]
    if not matches:
        raise NotAPayload("no carrier format matches its name")
    carrier = max(matches, key=len)
    if FORMATS[carrier] == kind:
        return carrier
    if FORMATS.get(f"{carrier}_{kind}") == kind:
        return f"{carrier}_{kind}"
    raise NotAPayload(f"{carrier} payloads are {FORMATS[carrier].upper()}, not {kind.upper()}")


def shipment_carrier(carrier: str) -> str:
    """The carrier name events of a payload format are filed under."""
    return _FILED_UNDER.get(carrier, carrier)


def folder_payloads(folder: Path) -> tuple[list[Payload], list[tuple[str, str]]]:
    """Every file of `folder` in a carrier format; and the others' names, each with why."""
    payloads: list[Payload] = []
    skipped: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        try:
            carrier = carrier_for(path, body[:64])
        except NotAPayload as exc:
            skipped.append((path.name, str(exc)))
            continue
        numbers = _numbers(body)
        named = None
        if carrier in NAMED_BY_POSTER:
            # A number of the demo's own when the file names none, so its
            # events still land on a shipment.
            named = numbers[0] if numbers else _made_up_number(path.name)
            numbers = numbers or [named]
        shipments = [(shipment_carrier(carrier), number) for number in numbers]
        content_type = _CONTENT_TYPES[FORMATS[carrier]]
        payloads.append(Payload(path.name, carrier, content_type, body, shipments, named))
    return payloads, skipped


def _numbers(body: bytes) -> list[str]:
    text = body.decode("utf-8", "replace")
    matches = (match.group(1) for match in _NUMBER_NEAR_KEY.finditer(text))
    found = dict.fromkeys(number for number in matches if any(c.isdigit() for c in number))
    return list(found)[:_MAX_NUMBERS_PER_FILE]


def _made_up_number(name: str) -> str:
    return "DEMO" + hashlib.sha256(name.encode()).hexdigest()[:12].upper()
