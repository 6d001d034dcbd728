"""Raw payloads from the bus to stored events, shipment status and status-change events."""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.errors import InvalidMessage, NotFound
from wharf_common.storage import ObjectStore

from .attach import STATUS_CHANGED as STATUS_CHANGED
from .attach import Attacher, Attachment
from .db import DEAD_LETTERED, IngestRecord, StatusChange, record_ingests
from .errors import InvalidPayload, UnknownCarrier
from .models import ParseResult
from .parsing import AdapterRunner, AdapterTimeout
from .registry import parse
from .settings import CarrierIngestSettings

logger = logging.getLogger(__name__)

PAYLOADS_QUEUE = "wharf.carrier-ingest.payloads"
PAYLOAD_RECEIVED = "carrier.payload.received"


class PayloadReceived(BaseModel):
    """The command the gateway sends once a raw payload is in object storage."""

    model_config = ConfigDict(extra="ignore")

    ingest_id: uuid.UUID
    carrier: str
    payload_ref: str
    content_type: str | None = None
    tracking_number: str | None = None
    received_at: datetime


class Ingestor:
    """Translates one stored payload and attaches its events in a single transaction.

    The adapter runs in a worker thread under `parse_timeout` (see
    `parsing.AdapterRunner`); a payload whose adapter runs past it is
    dead-lettered.
    """

    def __init__(
        self, settings: CarrierIngestSettings, pool: asyncpg.Pool[Any], store: ObjectStore
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store
        self.adapters: AdapterRunner[ParseResult] = AdapterRunner(
            settings.parse_threads, lambda: self.settings.parse_timeout
        )
        self.attacher = Attacher(pool, writers=settings.attach_writers)

    async def close(self) -> None:
        """Stop attaching and release the parse threads (a hung one finishes on its own)."""
        await self.attacher.close()
        await self.adapters.close()

    async def handle(self, delivery: Delivery) -> None:
        """Consumer handler of `PAYLOADS_QUEUE`."""
        envelope = delivery.envelope
        tenant = envelope.tenant
        if not tenant:
            raise InvalidMessage("a carrier payload without a tenant")
        ingest = PayloadReceived.model_validate(delivery.body)

        try:
            payload = await self.store.get(ingest.payload_ref)
        except NotFound:
            raise InvalidMessage(f"raw payload {ingest.payload_ref} is gone") from None
        result = await self._parse(ingest, payload)

        changes = await self.attach(envelope, tenant, ingest, result)
        logger.info(
            "ingested %s payload: %d events, %d status changes",
            ingest.carrier,
            len(result.events),
            len(changes),
            extra={"ingest_id": str(ingest.ingest_id)},
        )

    async def _parse(self, ingest: PayloadReceived, payload: bytes) -> ParseResult:
        call = functools.partial(
            parse,
            ingest.carrier,
            payload,
            ingest.content_type,
            tracking_number=ingest.tracking_number,
            zone_overrides=self.settings.carrier_zones or None,
        )
        try:
            return await self.adapters.run(call)
        except AdapterTimeout:
            logger.warning("the %s adapter hung; replacing its threads", ingest.carrier)
            raise InvalidMessage(
                f"{ingest.carrier}: parse deadline of {self.settings.parse_timeout:g} s"
                f" exceeded; payload {ingest.payload_ref}"
            ) from None
        except (InvalidPayload, UnknownCarrier) as exc:
            raise InvalidMessage(f"{exc}; payload {ingest.payload_ref}") from exc

    async def attach(
        self, envelope: Envelope, tenant: str, ingest: PayloadReceived, result: ParseResult
    ) -> list[StatusChange]:
        """Store new events, move shipments forward and queue their status changes."""
        item = Attachment(envelope, tenant, ingest.model_dump(mode="json"), result)
        return await self.attacher.attach(item)

    async def on_dead(self, envelope: Envelope, reason: str) -> None:
        """Record a dead-lettered payload, so its ingest shows why it stopped."""
        if not envelope.tenant:
            return
        try:
            ingest = PayloadReceived.model_validate(envelope.body)
        except ValueError:
            return
        # The tenant reads this reason: without the consumer's label of the error
        # class, and without the payload's ref, which has a column of its own.
        detail = reason.replace("InvalidMessage: ", "", 1)
        detail = detail.replace(f"; payload {ingest.payload_ref}", "")
        record = IngestRecord(
            tenant=envelope.tenant,
            ingest=ingest.model_dump(mode="json"),
            outcome=DEAD_LETTERED,
            detail=detail[:1000],
        )
        await record_ingests(self.pool, [record])
