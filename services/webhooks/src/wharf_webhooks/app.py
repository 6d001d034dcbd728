"""The webhooks service's factory: its spec, RPC, event subscription and dispatcher."""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any

from wharf_common import events
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import DEVELOPMENT_KEY_ENCRYPTION_KEY
from wharf_common.subscriber import Subscriber
from wharf_webhooks import __version__, sealing
from wharf_webhooks.delivery import Dispatcher
from wharf_webhooks.handlers import SCHEMA, Webhooks
from wharf_webhooks.settings import WebhookSettings

logger = logging.getLogger(__name__)

RPC_QUEUE = "wharf.webhooks.rpc"


async def setup(rt: Runtime) -> None:
    """Answer management RPC, take every catalog event, and deliver from the database."""
    settings = rt.settings
    assert isinstance(settings, WebhookSettings)
    # The pool exists only once the runtime has connected, after setup.
    built: list[Webhooks] = []

    def service() -> Webhooks:
        if not built:
            built.append(Webhooks(rt.db, settings, Dispatcher(rt.db, settings)))
        return built[0]

    async def answer(envelope: Envelope) -> Any:
        return await service().answer(envelope)

    async def on_event(event: events.Event, delivery: Delivery) -> None:
        await service().on_event(event, delivery)

    async def dispatch() -> None:
        await service().dispatcher.run()

    async def seal_secrets() -> None:
        if settings.key_encryption_key.get_secret_value() == DEVELOPMENT_KEY_ENCRYPTION_KEY:
            logger.warning(
                "endpoint secrets are sealed with the development key;"
                " set WHARF_KEY_ENCRYPTION_KEY outside development"
            )
        await sealing.reseal(rt.db, service().box)

    subscriber = Subscriber("webhooks")
    for name in events.event_types():
        subscriber.on(events.model_for(name))(on_event)
    subscriber.attach(rt)
    rt.serve_rpc(RPC_QUEUE, answer)
    rt.add_task("webhook-dispatcher", dispatch)
    rt.add_task("seal-endpoint-secrets", seal_secrets)


def spec() -> ServiceSpec:
    """Describe the webhooks service to the runtime."""
    return ServiceSpec(
        name="webhooks",
        version=__version__,
        setup=setup,
        schema=SCHEMA,
        migrations=files("wharf_webhooks") / "migrations",
    )
