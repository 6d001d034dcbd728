"""Building canonical events: zone resolution, classification, identity, de-duplication."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .classify import classify, tables
from .errors import InvalidPayload
from .models import (
    INCIDENT_STATUSES,
    CarrierError,
    Location,
    NotFound,
    ParseResult,
    TrackingEvent,
)
from .places import zone_for
from .times import localize


def event_hash(
    carrier: str,
    tracking_number: str,
    occurred_at: datetime,
    code: str | None,
    location: Location | None,
) -> str:
    """Stable identity for an event the carrier gives no id for."""
    parts = (
        carrier,
        tracking_number,
        occurred_at.astimezone(UTC).isoformat(),
        code or "",
        location.key() if location else "",
    )
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class ResultBuilder:
    """Collects one payload's events and outcomes for an adapter."""

    def __init__(
        self,
        adapter: str,
        *,
        carrier: str | None = None,
        table: str | None = None,
        zone_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.adapter = adapter
        self.carrier = carrier or adapter
        self.table = table or adapter
        zone_name = (zone_overrides or {}).get(adapter)
        if zone_name is None:
            known = tables().get(self.table)
            zone_name = known.default_zone if known else "UTC"
        try:
            self.default_zone: tzinfo = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown zone {zone_name!r} for carrier {adapter}") from exc
        self._events: list[TrackingEvent] = []
        self._not_found: list[NotFound] = []
        self._errors: list[CarrierError] = []

    def invalid(self, reason: str) -> InvalidPayload:
        """The error to raise for a payload this adapter cannot read."""
        return InvalidPayload(self.adapter, reason)

    def place(
        self,
        moment: datetime,
        location: Location | None = None,
        zone: tzinfo | None = None,
    ) -> tuple[datetime, str]:
        """A UTC time and how it was found, for an aware or a naive local moment.

        Naive times take the given zone, else the location's zone, else the
        carrier's configured zone.
        """
        if moment.tzinfo is not None and moment.utcoffset() is not None:
            basis = "utc" if moment.utcoffset() == UTC.utcoffset(None) else "offset"
            return moment.astimezone(UTC), basis
        if zone is not None:
            return localize(moment, zone), f"declared:{zone}"
        located = zone_for(location)
        if located is not None:
            return localize(moment, located), f"location:{located}"
        return localize(moment, self.default_zone), f"carrier:{self.default_zone}"

    def event(
        self,
        *,
        tracking_number: str | None,
        moment: datetime | None,
        location: Location | None = None,
        codes: Sequence[tuple[str, str | None]] = (),
        description: str | None = None,
        texts: Sequence[str | None] = (),
        carrier_code: str | None = None,
        carrier_event_id: str | None = None,
        reason: str | None = None,
        zone: tzinfo | None = None,
        raw_time: str | None = None,
        operator: str | None = None,
    ) -> TrackingEvent:
        """Classify and record one event; raise InvalidPayload if it lacks essentials."""
        number = (tracking_number or "").strip()
        if not number:
            raise self.invalid("event without a tracking number")
        if moment is None:
            raise self.invalid(f"event for {number} has no readable time ({raw_time!r})")

        occurred_at, basis = self.place(moment, location, zone)
        description = " ".join((description or "").split())
        verdict = classify(self.table, codes, [description, *texts])
        code = carrier_code or next((c.strip() for _, c in codes if c and c.strip()), None)
        event = TrackingEvent(
            tracking_number=number,
            carrier=self.carrier,
            operator=operator,
            event_id=carrier_event_id
            or event_hash(self.carrier, number, occurred_at, code, location),
            occurred_at=occurred_at,
            location=location,
            carrier_code=code,
            description=description,
            status=verdict.status,
            incident_reason=(reason or description or None)
            if verdict.status in INCIDENT_STATUSES
            else None,
            classified_by=verdict.rule,
            time_basis=basis,
            raw_time=raw_time,
        )
        self._events.append(event)
        return event

    def not_found(self, tracking_number: str | None, message: str, code: str | None = None) -> None:
        """Record a tracking number the carrier does not know."""
        number = tracking_number.strip() if tracking_number else None
        self._not_found.append(NotFound(tracking_number=number or None, code=code, message=message))

    def error(self, code: str | None, message: str, tracking_number: str | None = None) -> None:
        """Record an error reply from the carrier."""
        self._errors.append(
            CarrierError(code=code, message=message, tracking_number=tracking_number)
        )

    def result(self) -> ParseResult:
        """Events de-duplicated by identity and ordered by time, with the outcomes."""
        unique: dict[str, TrackingEvent] = {}
        for event in self._events:
            unique.setdefault(event.event_id, event)
        ordered = sorted(unique.values(), key=lambda e: (e.tracking_number, e.occurred_at))
        return ParseResult(
            carrier=self.adapter,
            events=ordered,
            not_found=self._not_found,
            errors=self._errors,
            duplicates_dropped=len(self._events) - len(unique),
        )
