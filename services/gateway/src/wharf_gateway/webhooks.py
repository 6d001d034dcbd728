"""Handlers of the webhook routes: the webhooks service answers over RPC."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wharf_common.envelope import Envelope
from wharf_common.http import REQUEST_ID_KEY
from wharf_gateway.edge import Call, Edge
from wharf_gateway.routes import Handler

WEBHOOKS_QUEUE = "wharf.webhooks.rpc"


def webhook_handlers(edge: Edge) -> dict[str, Handler]:
    """Handlers of the webhook routes, keyed by operation id."""

    def forward(operation: str, *, status: int = 200) -> Handler:
        async def handle(call: Call) -> web.StreamResponse:
            data: dict[str, Any] = {}
            for part in (call.body, call.path, call.query):
                if part is not None:
                    data.update(part.model_dump(mode="json", exclude_none=True))
            envelope = Envelope(
                type=operation,
                body={"data": data},
                correlation_id=call.request[REQUEST_ID_KEY],
                deadline=call.deadline,
                tenant=call.principal.tenant if call.principal else None,
            )
            result = await edge.bus.call(
                WEBHOOKS_QUEUE, envelope, timeout=edge.settings.request_timeout
            )
            return web.json_response(result, status=status)

        return handle

    return {
        "post_webhooks": forward("webhooks.create", status=201),
        "get_webhooks": forward("webhooks.list"),
        "delete_webhooks_id": forward("webhooks.delete"),
        "get_webhooks_id_deliveries": forward("webhooks.deliveries"),
        "post_webhooks_id_replay": forward("webhooks.replay", status=202),
    }
