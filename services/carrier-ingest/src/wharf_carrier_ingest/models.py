"""The canonical tracking model every carrier adapter produces."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Status(StrEnum):
    """Canonical shipment status of one tracking event."""

    PENDING = "pending"
    INFO_RECEIVED = "info_received"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    EXCEPTION = "exception"
    ON_HOLD = "on_hold"
    RETURNED = "returned"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


INCIDENT_STATUSES = frozenset(
    {
        Status.DELIVERY_FAILED,
        Status.EXCEPTION,
        Status.ON_HOLD,
        Status.RETURNED,
        Status.CANCELLED,
    }
)


class Location(BaseModel):
    """Where an event happened, as far as the carrier says."""

    model_config = ConfigDict(frozen=True)

    city: str | None = None
    region: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 where derivable")
    postal_code: str | None = None

    def key(self) -> str:
        """Stable text form used in event identities."""
        return "|".join(part or "" for part in (self.city, self.region, self.country))


class TrackingEvent(BaseModel):
    """One carrier scan or status change, translated and classified."""

    model_config = ConfigDict(frozen=True)

    tracking_number: str
    carrier: str
    operator: str | None = Field(
        default=None, description="Carrier named inside an aggregator or EDI payload"
    )
    event_id: str
    occurred_at: datetime
    location: Location | None = None
    carrier_code: str | None = None
    description: str = ""
    status: Status
    incident_reason: str | None = None
    classified_by: str
    time_basis: str = Field(
        description="How the UTC time was found: offset, utc, or declared/location/carrier zone"
    )
    raw_time: str | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc_only(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        return value.astimezone(UTC)


class NotFound(BaseModel):
    """A tracking number the carrier says it does not know."""

    model_config = ConfigDict(frozen=True)

    tracking_number: str | None
    code: str | None = None
    message: str = ""


class CarrierError(BaseModel):
    """An error reply from the carrier: no events, nothing to retry here."""

    model_config = ConfigDict(frozen=True)

    code: str | None
    message: str
    tracking_number: str | None = None


class ParseResult(BaseModel):
    """Everything one payload said: events, unknown numbers and carrier errors."""

    model_config = ConfigDict(frozen=True)

    carrier: str
    events: list[TrackingEvent] = Field(default_factory=list)
    not_found: list[NotFound] = Field(default_factory=list)
    errors: list[CarrierError] = Field(default_factory=list)
    duplicates_dropped: int = 0

    @property
    def tracking_numbers(self) -> list[str]:
        """Tracking numbers that have events, in first-seen order."""
        return list(dict.fromkeys(event.tracking_number for event in self.events))

    def latest(self, tracking_number: str) -> TrackingEvent | None:
        """The newest event of one tracking number by event time."""
        mine = [event for event in self.events if event.tracking_number == tracking_number]
        return max(mine, key=lambda event: event.occurred_at, default=None)
