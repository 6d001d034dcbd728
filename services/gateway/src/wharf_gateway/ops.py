"""Handlers of the routes for platform operators: log search."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wharf_common.envelope import Envelope
from wharf_common.http import REQUEST_ID_KEY
from wharf_gateway.edge import Call, Edge
from wharf_gateway.routes import Handler

LOG_SINK_QUEUE = "wharf.log-sink.rpc"


def ops_handlers(edge: Edge) -> dict[str, Handler]:
    """Handlers of the ops routes, keyed by operation id."""

    async def search_logs(call: Call) -> web.StreamResponse:
        query: dict[str, Any] = (
            call.query.model_dump(mode="json", exclude_none=True) if call.query else {}
        )
        envelope = Envelope(
            type="logs.search",
            body=query,
            correlation_id=call.request[REQUEST_ID_KEY],
            deadline=call.deadline,
            tenant=call.principal.tenant if call.principal else None,
        )
        result = await edge.bus.call(LOG_SINK_QUEUE, envelope)
        return web.json_response(result)

    return {"get_logs": search_logs}
