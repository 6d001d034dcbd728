"""The carrier-ingest factory: its spec, and the setup that wires consumers, RPC and relay."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from importlib.resources import files
from typing import Any

from wharf_common import outbox
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.runtime import Runtime, ServiceSpec

from .db import SCHEMA, forget_ingests
from .documents import DOCUMENTS_QUEUE, DocumentJobs
from .handlers import RPC_QUEUE, Handlers
from .ingest import PAYLOADS_QUEUE, Ingestor
from .settings import CarrierIngestSettings

__version__ = "0.1.0"


class CarrierIngest:
    """The service's parts, built on first use, once the runtime has connected."""

    def __init__(self, rt: Runtime, settings: CarrierIngestSettings) -> None:
        self.rt = rt
        self.settings = settings

    @functools.cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.settings, self.rt.db, self.rt.store)

    @functools.cached_property
    def jobs(self) -> DocumentJobs:
        return DocumentJobs(self.settings, self.rt.db, self.rt.store)

    @functools.cached_property
    def handlers(self) -> Handlers:
        retention = timedelta(days=self.settings.ingest_retention_days)
        return Handlers(self.rt.db, self.jobs, self.rt.store, ingest_retention=retention)

    async def ingest(self, delivery: Delivery) -> None:
        await self.ingestor.handle(delivery)

    async def ingest_dead(self, envelope: Envelope, reason: str) -> None:
        await self.ingestor.on_dead(envelope, reason)

    async def chunk(self, delivery: Delivery) -> None:
        await self.jobs.handle_chunk(delivery)

    async def chunk_dead(self, envelope: Envelope, reason: str) -> None:
        await self.jobs.on_dead(envelope, reason)

    async def answer(self, envelope: Envelope) -> Any:
        return await self.handlers(envelope)

    async def publish(self, kind: str, destination: str, envelope: Envelope) -> None:
        """Publish one outbox row: events by type, commands to their queue."""
        if kind == "event":
            await self.rt.bus.publish_event(envelope)
        else:
            await self.rt.bus.send(destination, envelope)

    async def relay(self) -> None:
        """Relay the outbox until the service stops, in order: a shipment's changes never swap."""
        relay = outbox.OutboxRelay(
            self.rt.db,
            SCHEMA,
            self.publish,
            batch_size=self.settings.outbox_batch_size,
            poll_interval=self.settings.outbox_poll_interval,
        )
        relay.start()
        try:
            await asyncio.Event().wait()
        finally:
            await relay.stop()

    async def forget_ingests(self) -> int:
        """Delete the ingest records past their retention."""
        retention = timedelta(days=self.settings.ingest_retention_days)
        return await forget_ingests(self.rt.db, retention)

    async def close(self) -> None:
        if "ingestor" in self.__dict__:
            await self.ingestor.close()
        if "jobs" in self.__dict__:
            await self.jobs.close()


async def setup(rt: Runtime) -> None:
    """Consume payloads and document chunks, answer RPC, relay the outbox, trim ingests."""
    settings = rt.settings
    assert isinstance(settings, CarrierIngestSettings)
    service = CarrierIngest(rt, settings)
    rt.consume(PAYLOADS_QUEUE, service.ingest, on_dead=service.ingest_dead)
    rt.consume(DOCUMENTS_QUEUE, service.chunk, on_dead=service.chunk_dead)
    rt.serve_rpc(RPC_QUEUE, service.answer)
    rt.add_task("outbox-relay", service.relay)
    rt.add_housekeeping("forget-ingests", service.forget_ingests, "ingest records")
    rt.on_stop(service.close)


def spec() -> ServiceSpec:
    """Describe carrier-ingest to the runtime."""
    return ServiceSpec(
        name="carrier-ingest",
        version=__version__,
        setup=setup,
        schema=SCHEMA,
        migrations=files("wharf_carrier_ingest") / "migrations",
    )
