"""The documents service's factory: its spec and the setup that registers its work."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from aiohttp import web

from wharf_common import claimcheck
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.outbox import OutboxRelay
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_documents import __version__, batches, handlers, jobs
from wharf_documents.context import (
    BACKLOG_QUERY,
    BATCH_QUEUE,
    BUNDLE_QUEUE,
    RENDER_QUEUE,
    RPC_QUEUE,
    SCHEMA,
    Context,
)
from wharf_documents.render import Renderer
from wharf_documents.settings import DocumentsSettings
from wharf_documents.window import REFRESH_SECONDS, ConsumerCount

CONTEXT_KEY: web.AppKey[Context] = web.AppKey("documents", Context)


async def setup(rt: Runtime) -> None:
    """Serve the RPC queue, consume render and bundle commands, and relay the outbox.

    Prefetch and concurrency follow the render workers, so a task never holds
    much more rendering work than it can start; see `batches` for the fairness
    between single documents and batches. A background task follows the
    consumers of the batch queue, which size each batch's window.
    """
    settings = rt.settings
    assert isinstance(settings, DocumentsSettings)
    ctx = Context(rt, settings, Renderer(settings))
    rt.app[CONTEXT_KEY] = ctx
    workers = ctx.workers

    async def rpc(envelope: Envelope) -> Any:
        # A template archive can pass the claim-check threshold, and the RPC
        # server hands requests over as they arrived.
        envelope = await claimcheck.check_out(envelope, rt.store)
        return await handlers.handle(ctx, envelope)

    async def render(delivery: Delivery) -> None:
        await jobs.handle_render(ctx, delivery)

    async def render_dead(envelope: Envelope, reason: str) -> None:
        await jobs.on_dead(ctx, envelope, reason)

    async def bundle(delivery: Delivery) -> None:
        await batches.handle_bundle(ctx, delivery)

    async def bundle_dead(envelope: Envelope, reason: str) -> None:
        await batches.on_bundle_dead(ctx, envelope, reason)

    async def publish(kind: str, destination: str, envelope: Envelope) -> None:
        if kind == "event":
            await rt.bus.publish_event(envelope)
        else:
            await rt.bus.send(destination, envelope)

    relays: list[OutboxRelay] = []

    async def start_relay() -> None:
        relays.append(OutboxRelay(rt.db, SCHEMA, publish))
        relays[-1].start()

    async def stop_relay() -> None:
        # Runs after the consumers drained: publish what they recorded last, then stop.
        for relay in relays:
            await relay.relay_once()
            await relay.stop()

    async def follow_consumers() -> None:
        await ctx.window.follow(ConsumerCount(rt.bus, BATCH_QUEUE), REFRESH_SECONDS)

    rt.serve_rpc(RPC_QUEUE, rpc)
    singles, batch = ctx.handlers(workers), ctx.handlers(ctx.batch_concurrency)
    rt.consume(RENDER_QUEUE, render, prefetch=singles, concurrency=singles, on_dead=render_dead)
    rt.consume(BATCH_QUEUE, render, prefetch=batch, concurrency=batch, on_dead=render_dead)
    rt.consume(BUNDLE_QUEUE, bundle, prefetch=1, concurrency=1, on_dead=bundle_dead)
    rt.add_task("outbox", start_relay)
    rt.add_task("batch-window", follow_consumers)
    rt.on_stop(ctx.renderer.close)
    rt.on_stop(stop_relay)


def spec() -> ServiceSpec:
    """Describe the documents service to the runtime."""
    return ServiceSpec(
        name="documents",
        version=__version__,
        setup=setup,
        schema=SCHEMA,
        migrations=files("wharf_documents") / "migrations",
        backlog_query=BACKLOG_QUERY,
    )
