"""The service's tables: ingests, tracking events, shipments and their status."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from wharf_common.db import Connection, delete_before

from .models import ParseResult, TrackingEvent

SCHEMA = "carrier_ingest"
DEAD_LETTERED = "dead_lettered"


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


@dataclass(frozen=True)
class IngestRecord:
    """What one payload produced, as the ingests table keeps it."""

    tenant: str
    ingest: dict[str, Any]
    outcome: str
    detail: str | None = None
    result: ParseResult | None = None
    stored: int = 0
    status_changes: int = 0


StoredKey = tuple[str, uuid.UUID, str, str]
"""(tenant, ingest id, carrier, event id) of a stored event."""

NumberKey = tuple[str, str, str]
"""(tenant, carrier, tracking number)."""


async def lock_numbers(conn: Connection, keys: Sequence[NumberKey]) -> None:
    """Serialise work on the same tenant, carrier and tracking numbers within the transaction.

    Event intake and shipment creation both take these locks, so an event
    committed while its shipment is being created is always attached by one
    of the two. The locks are taken in one statement, in sorted order, so
    transactions locking overlapping sets wait for each other rather than
    deadlock.
    """
    names = sorted({"\x1f".join(key) for key in keys})
    if not names:
        return
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(name, 0))) FROM"
        " (SELECT name FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) ORDER BY n) s",
        names,
    )


async def insert_events(
    conn: Connection, rows: Sequence[tuple[str, str, uuid.UUID, TrackingEvent]]
) -> set[StoredKey]:
    """Store (tenant, payload ref, ingest id, event) rows not stored before; return the new ones."""
    if not rows:
        return set()
    events = [row[3] for row in rows]
    stored = await conn.fetch(
        """
        INSERT INTO carrier_ingest.tracking_events (tenant, payload_ref, ingest_id, carrier,
            event_id, tracking_number, occurred_at, status, classified_by, location, code,
            description, incident_reason, operator, time_basis)
        SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[],
            $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::jsonb[], $11::text[],
            $12::text[], $13::text[], $14::text[], $15::text[])
        ON CONFLICT (tenant, carrier, event_id) DO NOTHING
        RETURNING tenant, ingest_id, carrier, event_id
        """,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
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
    return {(r["tenant"], r["ingest_id"], r["carrier"], r["event_id"]) for r in stored}


async def advance_status(
    conn: Connection, newest: Sequence[tuple[str, TrackingEvent]]
) -> dict[NumberKey, list[StatusChange]]:
    """Move each claiming shipment to its (tenant, event) if newer; return the real changes.

    Give at most one event per tenant, carrier and tracking number.
    """
    if not newest:
        return {}
    events = [event for _, event in newest]
    rows = await conn.fetch(
        """
        WITH new AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                $5::text[], $6::text[]) AS n(tenant, carrier, tracking_number, occurred_at,
                status, event_id)
        ), old AS (
            SELECT s.tenant, s.id, s.status AS previous, new.carrier, new.tracking_number,
                new.occurred_at, new.status, new.event_id
            FROM carrier_ingest.shipments s JOIN new ON s.tenant = new.tenant
                AND s.carrier = new.carrier AND s.tracking_number = new.tracking_number
            WHERE s.status_at IS NULL OR s.status_at < new.occurred_at
            FOR UPDATE OF s
        )
        UPDATE carrier_ingest.shipments s SET status = old.status,
            status_at = old.occurred_at, status_event_id = old.event_id, updated_at = now()
        FROM old WHERE s.tenant = old.tenant AND s.id = old.id
        RETURNING s.tenant, s.id, s.reference, old.previous, old.carrier,
            old.tracking_number, old.status, old.occurred_at, old.event_id
        """,
        [tenant for tenant, _ in newest],
        [e.carrier for e in events],
        [e.tracking_number for e in events],
        [e.occurred_at for e in events],
        [e.status.value for e in events],
        [e.event_id for e in events],
    )
    changes: dict[NumberKey, list[StatusChange]] = {}
    for row in rows:
        if row["previous"] == row["status"]:
            continue
        key = (row["tenant"], row["carrier"], row["tracking_number"])
        changes.setdefault(key, []).append(
            StatusChange(
                shipment_id=row["id"],
                carrier=row["carrier"],
                tracking_number=row["tracking_number"],
                reference=row["reference"],
                previous=row["previous"],
                status=row["status"],
                status_at=row["occurred_at"],
                event_id=row["event_id"],
            )
        )
    return changes


async def record_ingests(
    conn: Connection | asyncpg.Pool[asyncpg.Record], records: Sequence[IngestRecord]
) -> None:
    """Write or overwrite the records of what payloads produced (one per tenant and id)."""
    if not records:
        return
    rows = [_ingest_row(record) for record in records]
    await conn.execute(
        """
        INSERT INTO carrier_ingest.ingests (tenant, id, carrier, payload_ref, content_type,
            received_at, outcome, detail, events, duplicates, not_found, carrier_errors,
            status_changes, tracking)
        SELECT tenant, id, carrier, payload_ref, content_type, received_at, outcome, detail,
            events, duplicates, not_found::jsonb, carrier_errors::jsonb, status_changes,
            tracking::jsonb
        FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
            $6::timestamptz[], $7::text[], $8::text[], $9::int[], $10::int[], $11::text[],
            $12::text[], $13::int[], $14::text[]) AS u(tenant, id, carrier, payload_ref,
            content_type, received_at, outcome, detail, events, duplicates, not_found,
            carrier_errors, status_changes, tracking)
        ON CONFLICT (tenant, id) DO UPDATE SET outcome = excluded.outcome,
            detail = excluded.detail, events = excluded.events,
            duplicates = excluded.duplicates, not_found = excluded.not_found,
            carrier_errors = excluded.carrier_errors,
            status_changes = excluded.status_changes, tracking = excluded.tracking,
            processed_at = now()
        """,
        *(list(column) for column in zip(*rows, strict=True)),
    )


def _ingest_row(record: IngestRecord) -> tuple[Any, ...]:
    ingest, result = record.ingest, record.result
    return (
        record.tenant,
        uuid.UUID(str(ingest["ingest_id"])),
        ingest["carrier"],
        ingest["payload_ref"],
        ingest.get("content_type"),
        datetime.fromisoformat(ingest["received_at"]),
        record.outcome,
        record.detail,
        record.stored,
        (len(result.events) - record.stored) if result else 0,
        json.dumps([n.model_dump(mode="json") for n in result.not_found] if result else []),
        json.dumps([e.model_dump(mode="json") for e in result.errors] if result else []),
        record.status_changes,
        json.dumps(_tracking(result) if result else []),
    )


def _tracking(result: ParseResult) -> list[dict[str, str]]:
    keys = dict.fromkeys((event.carrier, event.tracking_number) for event in result.events)
    return [{"carrier": carrier, "tracking_number": number} for carrier, number in keys]


def ingest_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded ingest as the API shows it: handled, or failed with the reason."""
    failed = row["outcome"] == DEAD_LETTERED
    counts = {
        "events": row["events"] + row["duplicates"],
        "new_events": row["events"],
        "duplicates": row["duplicates"],
        "status_changes": row["status_changes"],
    }
    return {
        "ingest_id": str(row["id"]),
        "carrier": row["carrier"],
        "status": "failed" if failed else "ingested",
        "outcome": row["outcome"],
        "received_at": row["received_at"].isoformat(),
        "processed_at": row["processed_at"].isoformat(),
        "counts": None if failed else counts,
        "failure": {"adapter": row["carrier"], "reason": row["detail"]} if failed else None,
        "not_found": row["not_found"],
        "carrier_errors": row["carrier_errors"],
        "tracking": row["tracking"],
    }


async def forget_ingests(
    pool: asyncpg.Pool[asyncpg.Record], older_than: timedelta, *, batch: int = 10_000
) -> int:
    """Delete the records of payloads received more than `older_than` ago; return how many."""
    cutoff = datetime.now(UTC) - older_than
    return await delete_before(
        pool, "carrier_ingest.ingests", "tenant, id", "received_at", cutoff, batch=batch
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


def shipment_row(row: Mapping[str, Any]) -> dict[str, Any]:
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
