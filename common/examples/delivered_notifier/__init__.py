"""An example internal consumer: record a customer notification when a shipment is delivered.

It listens to ``shipment.status_changed`` on its own durable queue
(``wharf.delivered-notifier.events``) and writes one row to
``delivered_notifier.notifications`` per delivered shipment, in the same
transaction that records the event as handled, so a redelivered event
notifies nobody twice. A real notifier would put the e-mail or SMS in an
outbox written by that same transaction.

Run it beside the stack: ``PYTHONPATH=common/examples python -m delivered_notifier``.
It serves ``/healthz``, ``/readyz`` and ``/metrics`` on port 8090
(``WHARF_HTTP_PORT``), clear of the stack's ports.
"""

from __future__ import annotations

import logging
from importlib.resources import files

from wharf_common.consumer import Delivery
from wharf_common.events import ShipmentStatus, ShipmentStatusChanged
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import ServiceSettings
from wharf_common.subscriber import Subscriber, handled_once

logger = logging.getLogger(__name__)

NAME = "delivered-notifier"
SCHEMA = "delivered_notifier"


class NotifierSettings(ServiceSettings):
    """The runtime's settings, with a port of the notifier's own beside the stack's."""

    service_name: str = NAME
    http_port: int = 8090


async def setup(rt: Runtime) -> None:
    """Subscribe to status changes and notify on deliveries."""
    subscriber = Subscriber(NAME)

    @subscriber.on(ShipmentStatusChanged)
    async def status_changed(event: ShipmentStatusChanged, delivery: Delivery) -> None:
        if event.status is not ShipmentStatus.DELIVERED:
            return
        async with handled_once(rt.db, SCHEMA, delivery.envelope) as conn:
            if conn is None:
                return
            await conn.execute(
                "INSERT INTO delivered_notifier.notifications"
                " (event_id, tenant, shipment_id, tracking_number, reference, delivered_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                delivery.envelope.id,
                delivery.envelope.tenant,
                event.shipment_id,
                event.tracking_number,
                event.reference,
                event.status_at,
            )
        logger.info(
            "shipment delivered; notification recorded",
            extra={"shipment_id": str(event.shipment_id)},
        )

    subscriber.attach(rt)


def spec() -> ServiceSpec:
    """Describe the notifier to the runtime."""
    return ServiceSpec(
        name=NAME,
        version="0.1.0",
        setup=setup,
        schema=SCHEMA,
        migrations=files(__name__) / "migrations",
    )
