"""Handlers of the routes auth answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wharf_gateway.edge import Call, Edge
from wharf_gateway.routes import Handler


def auth_handlers(edge: Edge) -> dict[str, Handler]:
    """Handlers of the auth routes, keyed by operation id."""

    def forward(operation: str, *, status: int = 200, address: bool = False) -> Handler:
        async def handle(call: Call) -> web.StreamResponse:
            data: dict[str, Any] = call.body.model_dump(mode="json") if call.body else {}
            if call.path is not None:
                data.update(call.path.model_dump(mode="json"))
            extra = {"address": call.request.remote} if address else {}
            result = await edge.call_auth(call, operation, data, **extra)
            return web.json_response(result, status=status)

        return handle

    async def jwks(call: Call) -> web.StreamResponse:
        if not edge.tokens.document.get("keys"):
            await edge.tokens.refresh(force=True)
        return web.json_response(
            edge.tokens.document, headers={"Cache-Control": "public, max-age=60"}
        )

    return {
        "post_tenants": forward("auth.create_tenant", status=201),
        "post_auth_token": forward("auth.token", address=True),
        "post_auth_refresh": forward("auth.refresh"),
        "post_auth_logout": forward("auth.logout"),
        "get_well_known_jwksjson": jwks,
        "post_users": forward("auth.create_user", status=201),
        "post_api_keys": forward("auth.create_api_key", status=201),
        "delete_api_keys_id": forward("auth.revoke_api_key"),
    }
