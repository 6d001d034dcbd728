"""The gateway's factory: its spec and the setup that mounts every public route."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as redis
from aiohttp import web

from wharf_common import asyncapi
from wharf_common.errors import DeadlineExceeded, ServiceUnavailable
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.storage import LocalStore, object_routes
from wharf_gateway import __version__, openapi
from wharf_gateway.carriers import carrier_handlers
from wharf_gateway.edge import Edge
from wharf_gateway.handlers import auth_handlers, document_handlers
from wharf_gateway.ops import ops_handlers
from wharf_gateway.ratelimit import RateLimiter
from wharf_gateway.routes import table
from wharf_gateway.settings import GatewaySettings
from wharf_gateway.uploads import upload_handlers
from wharf_gateway.webhooks import webhook_handlers

logger = logging.getLogger(__name__)

EDGE_KEY: web.AppKey[Edge] = web.AppKey("edge", Edge)


async def setup(rt: Runtime) -> None:
    """Mount the public API, its OpenAPI and AsyncAPI documents and any signed-URL routes."""
    settings = rt.settings
    assert isinstance(settings, GatewaySettings)
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    edge = Edge(rt.bus, settings, RateLimiter(client, prefix=settings.rate_limit_prefix))
    rt.app[EDGE_KEY] = edge

    routes = table(
        {
            **auth_handlers(edge),
            **document_handlers(edge),
            **carrier_handlers(edge, lambda: rt.store),
            **ops_handlers(edge),
            **webhook_handlers(edge),
            **upload_handlers(edge, lambda: rt.store),
        }
    )
    for route in routes:
        rt.app.router.add_route(route.method, route.path, edge.handler(route))
    spec_document = openapi.document(routes)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec_document)

    rt.app.router.add_get("/openapi.json", openapi_json)
    events_document = asyncapi.document()

    async def asyncapi_json(request: web.Request) -> web.Response:
        return web.json_response(events_document)

    rt.app.router.add_get("/asyncapi.json", asyncapi_json)
    if settings.storage_url.startswith("file:"):
        _mount_objects(rt)

    async def keep_jwks() -> None:
        while True:
            try:
                await edge.tokens.refresh(force=True)
                wait = settings.jwks_refresh_interval
            except (ServiceUnavailable, DeadlineExceeded) as exc:
                logger.warning("could not fetch the JWKS yet (%s)", type(exc).__name__)
                wait = 2.0
            await asyncio.sleep(wait)

    async def close_redis() -> None:
        await client.aclose()

    rt.add_task("jwks", keep_jwks)
    rt.on_stop(close_redis)


def _mount_objects(rt: Runtime) -> None:
    # The store opens when the runtime connects, after the router is frozen,
    # so the routes are added now and bound to the store on first use.
    bound: dict[str, Any] = {}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if not bound:
            store = rt.store
            assert isinstance(store, LocalStore)
            bound.update({r.method: r.handler for r in object_routes(store)})
        handler = bound[request.method]
        response: web.StreamResponse = await handler(request)
        return response

    rt.app.router.add_route("GET", "/v1/objects/{key:.+}", dispatch)
    rt.app.router.add_route("PUT", "/v1/objects/{key:.+}", dispatch)


def spec() -> ServiceSpec:
    """Describe the gateway to the runtime."""
    return ServiceSpec(name="gateway", version=__version__, setup=setup, uses_storage=True)
