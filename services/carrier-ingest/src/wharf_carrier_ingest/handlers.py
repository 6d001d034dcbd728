"""RPC handlers behind the gateway: shipments, tracking events, ingests and document jobs.

The tenant always comes from the envelope, which the gateway fills from the
verified credential; a tenant named in a request body is never used.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wharf_common import deadlines, outbox
from wharf_common.db import Connection
from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, Conflict, NotFound, Unauthorized
from wharf_common.events import ShipmentStatus
from wharf_common.storage import ObjectStore

from .attach import STATUS_CHANGED, status_changed
from .db import SCHEMA, StatusChange, event_row, ingest_row, lock_numbers, shipment_row
from .documents import DocumentJobs

RPC_QUEUE = "wharf.carrier-ingest.rpc"

Operation = Callable[[str, dict[str, Any], Envelope], Awaitable[Any]]

_Name = Field(min_length=1, max_length=100)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateShipment(_Body):
    """A shipment of the caller's tenant."""

    carrier: str = Field(min_length=1, max_length=64)
    tracking_number: str = Field(min_length=1, max_length=100)
    reference: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ListShipments(_Body):
    """A page of shipments, newest first."""

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None
    status: ShipmentStatus | None = None


class ShipmentId(_Body):
    id: uuid.UUID


class TrackingQuery(_Body):
    carrier: str = Field(min_length=1, max_length=64)
    tracking_number: str = Field(min_length=1, max_length=100)


class IngestQuery(_Body):
    """One ingest; the gateway also names where it stored the payload, and when."""

    carrier: str = Field(min_length=1, max_length=64)
    ingest_id: uuid.UUID
    payload_ref: str | None = Field(default=None, max_length=1024)
    received_at: AwareDatetime | None = None


class Handlers:
    """Dispatches RPC requests by type to the operation that answers them."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        jobs: DocumentJobs,
        store: ObjectStore,
        *,
        ingest_retention: timedelta,
    ) -> None:
        self.pool = pool
        self.jobs = jobs
        self.store = store
        self.ingest_retention = ingest_retention
        self._operations: dict[str, Operation] = {
            "carrier.create_shipment": self.create_shipment,
            "carrier.list_shipments": self.list_shipments,
            "carrier.get_shipment": self.get_shipment,
            "carrier.tracking_events": self.tracking_events,
            "carrier.get_ingest": self.get_ingest,
            "carrier.create_documents_job": self.jobs.create,
            "carrier.get_documents_job": self.jobs.get,
        }

    async def __call__(self, envelope: Envelope) -> Any:
        """RPC entry point."""
        operation = self._operations.get(envelope.type)
        if operation is None:
            raise BadRequest(f"unknown operation {envelope.type!r}")
        if not envelope.tenant:
            raise Unauthorized("no tenant on the request")
        body = envelope.body if isinstance(envelope.body, dict) else {}
        data = body.get("data") or {}
        if not isinstance(data, dict):
            raise BadRequest("the request data must be an object")
        return await operation(envelope.tenant, data, envelope)

    async def create_shipment(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """Create a shipment and attach the events that arrived before it."""
        request = CreateShipment.model_validate(data)
        shipment_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_numbers(conn, [(tenant, request.carrier, request.tracking_number)])
            try:
                await conn.execute(
                    "INSERT INTO carrier_ingest.shipments (tenant, id, carrier, tracking_number,"
                    " reference, metadata) VALUES ($1, $2, $3, $4, $5, $6)",
                    tenant,
                    shipment_id,
                    request.carrier,
                    request.tracking_number,
                    request.reference,
                    request.metadata,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict("a shipment with this carrier and tracking number exists") from None
            latest = await conn.fetchrow(
                "SELECT event_id, status, occurred_at FROM carrier_ingest.tracking_events"
                " WHERE tenant = $1 AND carrier = $2 AND tracking_number = $3"
                " AND status <> 'unknown' ORDER BY occurred_at DESC, received_at LIMIT 1",
                tenant,
                request.carrier,
                request.tracking_number,
            )
            if latest is not None:
                await conn.execute(
                    "UPDATE carrier_ingest.shipments SET status = $3, status_at = $4,"
                    " status_event_id = $5 WHERE tenant = $1 AND id = $2",
                    tenant,
                    shipment_id,
                    latest["status"],
                    latest["occurred_at"],
                    latest["event_id"],
                )
                change = StatusChange(
                    shipment_id=shipment_id,
                    carrier=request.carrier,
                    tracking_number=request.tracking_number,
                    reference=request.reference,
                    previous=None,
                    status=latest["status"],
                    status_at=latest["occurred_at"],
                    event_id=latest["event_id"],
                )
                await outbox.enqueue(
                    conn,
                    SCHEMA,
                    status_changed(env, change),
                    kind="event",
                    destination=STATUS_CHANGED,
                )
        return await self._shipment(tenant, shipment_id)

    async def list_shipments(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """A page of the tenant's shipments, newest first, with a cursor to the next."""
        request = ListShipments.model_validate(data)
        after = _decode_cursor(request.cursor) if request.cursor else None
        rows = await self.pool.fetch(
            "SELECT * FROM carrier_ingest.shipments WHERE tenant = $1"
            " AND ($2::text IS NULL OR status = $2)"
            " AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))"
            " ORDER BY created_at DESC, id DESC LIMIT $5",
            tenant,
            request.status,
            after[0] if after else None,
            after[1] if after else None,
            request.limit + 1,
        )
        page = rows[: request.limit]
        cursor = None
        if len(rows) > request.limit:
            cursor = _encode_cursor(page[-1]["created_at"], page[-1]["id"])
        return {"items": [shipment_row(row) for row in page], "next_cursor": cursor}

    async def get_shipment(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """One shipment with its current status and event history."""
        return await self._shipment(tenant, ShipmentId.model_validate(data).id)

    async def _shipment(self, tenant: str, shipment_id: uuid.UUID) -> dict[str, Any]:
        # One round trip: the shipment's columns (renamed) on every row, one event each.
        rows = await self.pool.fetch(_SHIPMENT_WITH_EVENTS, tenant, shipment_id)
        if not rows:
            raise NotFound("no such shipment")
        shipment = {
            name[len("shipment_") :]: value
            for name, value in rows[0].items()
            if name.startswith("shipment_")
        }
        events = [event_row(row) for row in rows if row["event_id"] is not None]
        return {**shipment_row(shipment), "events": events}

    async def tracking_events(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """Events of one tracking number, claimed by a shipment or not."""
        request = TrackingQuery.model_validate(data)
        events = await self._events(self.pool, tenant, request.carrier, request.tracking_number)
        return {
            "carrier": request.carrier,
            "tracking_number": request.tracking_number,
            "events": events,
        }

    async def get_ingest(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """What became of one posted payload: pending, ingested, or failed and why."""
        request = IngestQuery.model_validate(data)
        row = await self.pool.fetchrow(
            "SELECT * FROM carrier_ingest.ingests WHERE tenant = $1 AND id = $2 AND carrier = $3",
            tenant,
            request.ingest_id,
            request.carrier,
        )
        if row is not None:
            return ingest_row(row)
        if request.received_at is None or not await self._queued(tenant, request):
            raise NotFound("no such ingest")
        return {
            "ingest_id": str(request.ingest_id),
            "carrier": request.carrier,
            "status": "pending",
            "received_at": request.received_at.isoformat(),
            "tracking": [],
        }

    async def _queued(self, tenant: str, request: IngestQuery) -> bool:
        # Accepted but not handled yet: the payload is stored and no record
        # says what became of it. Past the retention its record is gone too,
        # so an old payload tells nothing any more.
        ref, received_at = request.payload_ref, request.received_at
        if ref is None or received_at is None or not ref.startswith(f"{tenant}/"):
            return False
        if received_at < deadlines.now() - self.ingest_retention:
            return False
        return await self.store.exists(ref)

    async def _events(
        self, db: Connection | asyncpg.Pool[Any], tenant: str, carrier: str, number: str
    ) -> list[dict[str, Any]]:
        rows = await db.fetch(
            "SELECT * FROM carrier_ingest.tracking_events"
            " WHERE tenant = $1 AND carrier = $2 AND tracking_number = $3"
            " ORDER BY occurred_at, received_at",
            tenant,
            carrier,
            number,
        )
        return [event_row(row) for row in rows]


_SHIPMENT_WITH_EVENTS = """
    SELECT s.id AS shipment_id, s.carrier AS shipment_carrier,
           s.tracking_number AS shipment_tracking_number, s.reference AS shipment_reference,
           s.metadata AS shipment_metadata, s.status AS shipment_status,
           s.status_at AS shipment_status_at, s.created_at AS shipment_created_at, e.*
    FROM carrier_ingest.shipments s
    LEFT JOIN carrier_ingest.tracking_events e
        ON e.tenant = s.tenant AND e.carrier = s.carrier AND e.tracking_number = s.tracking_number
    WHERE s.tenant = $1 AND s.id = $2
    ORDER BY e.occurred_at, e.received_at
"""


def _encode_cursor(created_at: datetime, shipment_id: uuid.UUID) -> str:
    text = f"{created_at.isoformat()}|{shipment_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = text.partition("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except ValueError:
        raise BadRequest("invalid cursor") from None
