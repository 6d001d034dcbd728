"""Turning raw payload bytes into text, JSON, XML trees and CSV rows, safely."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .errors import InvalidPayload

_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._-]+)", re.IGNORECASE)
_LEGACY = "cp1252"


def declared_charset(content_type: str | None) -> str | None:
    """The charset a Content-Type header names, if it names a known one."""
    if not content_type:
        return None
    match = _CHARSET.search(content_type)
    if match is None:
        return None
    try:
        return codecs.lookup(match.group(1)).name
    except LookupError:
        return None


def decode_text(carrier: str, payload: bytes, content_type: str | None = None) -> str:
    """Decode a payload: BOM, then declared charset, then UTF-8, else Windows-1252.

    Legacy carrier files (CSV, X12) often arrive as Windows-1252 with no
    declaration; bytes that are not valid UTF-8 are read as that.
    """
    if payload.startswith(codecs.BOM_UTF8):
        return payload[len(codecs.BOM_UTF8) :].decode("utf-8", errors="strict")
    charset = declared_charset(content_type)
    if charset is not None:
        try:
            return payload.decode(charset)
        except UnicodeDecodeError as exc:
            raise InvalidPayload(carrier, f"payload is not valid {charset}: {exc}") from exc
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode(_LEGACY, errors="replace")


def load_json(carrier: str, payload: bytes, content_type: str | None = None) -> Any:
    """Parse a JSON payload or raise InvalidPayload saying why."""
    text = decode_text(carrier, payload, content_type).strip()
    if not text:
        raise InvalidPayload(carrier, "empty payload, expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(carrier, f"malformed JSON: {exc}") from exc


def load_xml(carrier: str, payload: bytes) -> Element:
    """Parse untrusted XML with DTDs, entities and external references refused.

    Tags and attributes lose their namespaces, so adapters match on local names.
    """
    data = payload.lstrip()
    if not data:
        raise InvalidPayload(carrier, "empty payload, expected XML")
    try:
        root: Element = fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise InvalidPayload(carrier, f"XML refused (DTD or entity declaration): {exc!r}") from exc
    except ParseError as exc:
        raise InvalidPayload(carrier, f"malformed XML: {exc}") from exc
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.rsplit("}", 1)[1]
    return root


def xml_text(element: Element | None, path: str | None = None) -> str | None:
    """Stripped text at a path below an element, or None when absent or blank."""
    if element is None:
        return None
    target = element.find(path) if path else element
    if target is None or target.text is None:
        return None
    text = " ".join(target.text.split())
    return text or None


def csv_rows(carrier: str, payload: bytes, content_type: str | None = None) -> list[list[str]]:
    """Rows of a CSV payload, decoded with the legacy-encoding rule."""
    text = decode_text(carrier, payload, content_type)
    sample = text[:2048]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    try:
        return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    except csv.Error as exc:
        raise InvalidPayload(carrier, f"malformed CSV: {exc}") from exc
