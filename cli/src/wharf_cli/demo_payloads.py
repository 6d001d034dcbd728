"""Carrier payloads for the demo: its own examples, or every file of a folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

# The payload formats carrier-ingest reads; a file name starts with one of them.
CARRIERS = (
    "aftership", "aramex", "australiapost", "bpost", "canadapost", "dhl_express",
    "dhl_unified", "dpd", "easypost", "edifact_iftsta", "fedex", "geodis", "gls", "haypost",
    "hermes", "landmark", "laposte", "nationex", "royalmail", "royalmail_csv", "sendle",
    "shippo", "smartkargo", "tnt", "ups", "usps", "x12_214",
)  # fmt: skip

_CONTENT_TYPES = {
    ".json": "application/json",
    ".xml": "text/xml",
    ".csv": "text/csv",
    ".edi": "text/plain",
    ".txt": "text/plain",
}
# A value next to a key that names a parcel: how the demo finds shipments in a foreign file.
_NUMBER_NEAR_KEY = re.compile(
    r"(?i)(?:tracking_?number|trackingnumber|waybill(?:number)?|awb(?:number)?|barcode|"
    r"parcel_?number|itemid|mailpieceid)[\"']?\s*[:=>]\s*[\"']?([A-Z0-9][A-Z0-9-]{5,34})\b"
)
_MAX_NUMBERS_PER_FILE = 5


@dataclass(frozen=True)
class Payload:
    """One file to post to ``/v1/carriers/{carrier}/events`` and the shipments it is about."""

    name: str
    carrier: str
    content_type: str
    body: bytes
    shipments: list[tuple[str, str]] = field(default_factory=list)


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


def carrier_for(path: Path, head: bytes) -> str | None:
    """The format a file is in, from its name (and first bytes for EDI); None when unknown."""
    stem = path.stem.lower()
    matches = [name for name in CARRIERS if stem == name or stem.startswith(name + "_")]
    if path.suffix.lower() == ".edi":
        text = head.lstrip()
        if text.startswith(b"ISA"):
            return "x12_214"
        if text.startswith((b"UNA", b"UNB")):
            return "edifact_iftsta"
        return None
    if not matches:
        return None
    carrier = max(matches, key=len)
    if path.suffix.lower() == ".csv" and f"{carrier}_csv" in CARRIERS:
        return f"{carrier}_csv"
    return carrier


def shipment_carrier(carrier: str) -> str:
    """The carrier name events of a payload format are filed under."""
    return carrier.removesuffix("_csv")


def folder_payloads(folder: Path) -> tuple[list[Payload], list[str]]:
    """Every file of `folder` that maps to a carrier; and the names of those that do not."""
    payloads: list[Payload] = []
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        carrier = carrier_for(path, body[:64])
        content_type = _CONTENT_TYPES.get(path.suffix.lower())
        if carrier is None or content_type is None:
            skipped.append(path.name)
            continue
        numbers = _numbers(body)
        shipments = [(shipment_carrier(carrier), number) for number in numbers]
        payloads.append(Payload(path.name, carrier, content_type, body, shipments))
    return payloads, skipped


def _numbers(body: bytes) -> list[str]:
    text = body.decode("utf-8", "replace")
    matches = (match.group(1) for match in _NUMBER_NEAR_KEY.finditer(text))
    found = dict.fromkeys(number for number in matches if any(c.isdigit() for c in number))
    return list(found)[:_MAX_NUMBERS_PER_FILE]
