"""The service's tables: ingests, tracking events, shipments and their status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from wharf_common.db import Connection

from .models import ParseResult, TrackingEvent

SCHEMA = "carrier_ingest"


@dataclass(frozen=True)
class StatusChange:
    """A shipment whose current status moved because of a newer event."""

    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str
    reference: str | None
    previous: str | None
    status: str
    status_at: datetime
    event_id: str


async def lock_numbers(conn: Connection, tenant: str, keys: Sequence[tuple[str, str]]) -> None:
    """Serialise work on the same (carrier, tracking number) pairs within the transaction.

    Event intake and shipment creation both take these locks, so an event
    committed while its shipment is being created is always attached by one
    of the two.
    """
    names = sorted({f"{tenant}\x1f{carrier}\x1f{number}" for carrier, number in keys})
    for name in names:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)


async def insert_events(
    conn: Connection,
    tenant: str,
    events: Sequence[TrackingEvent],
    *,
    payload_ref: str,
    ingest_id: uuid.UUID,
) -> list[TrackingEvent]:
    """Store events not stored before; return those that were new."""
    if not events:
        return []
    rows = await conn.fetch(
        """
        INSERT INTO carrier_ingest.tracking_events (tenant, payload_ref, ingest_id, carrier,
            event_id, tracking_number, occurred_at, status, classified_by, location, code,
            description, incident_reason, operator, time_basis)
        SELECT $1, $2, $3, * FROM unnest($4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[],
            $13::text[], $14::text[], $15::text[])
        ON CONFLICT (tenant, carrier, event_id) DO NOTHING
        RETURNING carrier, event_id
        """,
        tenant,
        payload_ref,
        ingest_id,
        [e.carrier for e in events],
        [e.event_id for e in events],
        [e.tracking_number for e in events],
        [e.occurred_at for e in events],
        [e.status.value for e in events],
        [e.classified_by for e in events],
        [e.location.model_dump(exclude_none=True) if e.location else None for e in events],
        [e.carrier_code for e in events],
        [e.description for e in events],
        [e.incident_reason for e in events],
        [e.operator for e in events],
        [e.time_basis for e in events],
    )
    fresh = {(r["carrier"], r["event_id"]) for r in rows}
    return [e for e in events if (e.carrier, e.event_id) in fresh]


async def advance_status(
    conn: Connection, tenant: str, event: TrackingEvent
) -> StatusChange | None:
    """Move the claiming shipment to `event` if it is newer; return a real status change."""
    row = await conn.fetchrow(
        """
        WITH old AS (
            SELECT id, status FROM carrier_ingest.shipments
            WHERE tenant = $1 AND carrier = $2 AND tracking_number = $3
              AND (status_at IS NULL OR status_at < $4)
            FOR UPDATE
        )
        UPDATE carrier_ingest.shipments s SET status = $5, status_at = $4, status_event_id = $6,
            updated_at = now()
        FROM old WHERE s.tenant = $1 AND s.id = old.id
        RETURNING s.id, s.reference, old.status AS previous
        """,
        tenant,
        event.carrier,
        event.tracking_number,
        event.occurred_at,
        event.status.value,
        event.event_id,
    )
    if row is None or row["previous"] == event.status.value:
        return None
    return StatusChange(
        shipment_id=row["id"],
        carrier=event.carrier,
        tracking_number=event.tracking_number,
        reference=row["reference"],
        previous=row["previous"],
        status=event.status.value,
        status_at=event.occurred_at,
        event_id=event.event_id,
    )


async def record_ingest(
    conn: Connection | asyncpg.Pool[asyncpg.Record],
    tenant: str,
    ingest: dict[str, Any],
    *,
    outcome: str,
    detail: str | None = None,
    result: ParseResult | None = None,
    stored: int = 0,
) -> None:
    """Write or overwrite the record of what one payload produced."""
    await conn.execute(
        """
        INSERT INTO carrier_ingest.ingests (tenant, id, carrier, payload_ref, content_type,
            received_at, outcome, detail, events, duplicates, not_found, carrier_errors)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (tenant, id) DO UPDATE SET outcome = excluded.outcome,
            detail = excluded.detail, events = excluded.events,
            duplicates = excluded.duplicates, not_found = excluded.not_found,
            carrier_errors = excluded.carrier_errors, processed_at = now()
        """,
        tenant,
        uuid.UUID(str(ingest["ingest_id"])),
        ingest["carrier"],
        ingest["payload_ref"],
        ingest.get("content_type"),
        datetime.fromisoformat(ingest["received_at"]),
        outcome,
        detail,
        stored,
        (len(result.events) - stored) if result else 0,
        [n.model_dump() for n in result.not_found] if result else [],
        [e.model_dump() for e in result.errors] if result else [],
    )


def event_row(row: asyncpg.Record) -> dict[str, Any]:
    """A stored event as the API shows it."""
    return {
        "event_id": row["event_id"],
        "carrier": row["carrier"],
        "tracking_number": row["tracking_number"],
        "occurred_at": row["occurred_at"].isoformat(),
        "status": row["status"],
        "classified_by": row["classified_by"],
        "location": row["location"],
        "code": row["code"],
        "description": row["description"],
        "incident_reason": row["incident_reason"],
        "operator": row["operator"],
    }


def shipment_row(row: asyncpg.Record) -> dict[str, Any]:
    """A shipment as the API shows it."""
    return {
        "id": str(row["id"]),
        "carrier": row["carrier"],
        "tracking_number": row["tracking_number"],
        "reference": row["reference"],
        "metadata": row["metadata"],
        "status": row["status"],
        "status_at": row["status_at"].isoformat() if row["status_at"] else None,
        "created_at": row["created_at"].isoformat(),
    }
