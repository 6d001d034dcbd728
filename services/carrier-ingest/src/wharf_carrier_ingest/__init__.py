"""Carrier payloads translated into canonical, classified tracking events."""

from __future__ import annotations

from .classify import unknown_code_counts
from .codetables import CodeEntry, load_code_table
from .errors import InvalidPayload, UnknownCarrier
from .models import CarrierError, Location, NotFound, ParseResult, Status, TrackingEvent
from .registry import carriers, parse

__all__ = [
    "CarrierError",
    "CodeEntry",
    "InvalidPayload",
    "Location",
    "NotFound",
    "ParseResult",
    "Status",
    "TrackingEvent",
    "UnknownCarrier",
    "carriers",
    "load_code_table",
    "parse",
    "unknown_code_counts",
]
