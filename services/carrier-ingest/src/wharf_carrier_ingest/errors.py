"""Errors raised by carrier translation."""

from __future__ import annotations

from wharf_common.errors import InvalidMessage, WharfError


class InvalidPayload(InvalidMessage):
    """A payload that cannot be read as the carrier's format; retrying will not help."""

    def __init__(self, carrier: str, reason: str) -> None:
        super().__init__(f"{carrier}: {reason}")
        self.carrier = carrier
        self.reason = reason


class UnknownCarrier(WharfError):
    """No adapter is registered under the requested carrier name."""
