"""Batches: many documents from one template, fed to the bus in a sliding window, then bundled.

Fairness. RabbitMQ 3.10 has no priorities on quorum queues, so fairness
comes from what this service puts on the bus and how it consumes it:

- Single documents and batch items travel on separate queues
  (``wharf.documents.render`` and ``wharf.documents.render-batch``), and
  both consumers take no more than two messages per worker, so that a
  worker never waits while a handler stores a PDF. A `RenderGate`
  admits them to the workers: a single document goes before any waiting
  batch item, so it waits at most for the first batch render in progress
  to end. With ``reserved_workers`` set, batch items leave that many
  workers free and a single document does not wait at all, at the cost of
  batch throughput.
- A batch never floods the bus. Its items are rows in ``jobs``; only a
  window of them is on the bus or rendering at a time, and each item that
  finishes tops the window up, in the same transaction that records it.
  Two batches from different tenants therefore share the batch queue in
  turns instead of one waiting behind the other's 10,000 items, and memory
  stays flat: prefetch is bounded by the workers and the rest waits in
  PostgreSQL.

Scaling. The window follows the tasks that drain it (`window.BatchWindow`:
``batch_window`` items, default four per worker, for each consumer of the
batch queue), so a batch speeds up when tasks are added, and after a
scale-in the excess drains without refill. The items still waiting are
visible to every scaler through the ``documents.backlog`` view, which they
add to the queue depth.

When the last item is done or failed, a bundle command makes the zip or
merged PDF, stores it, and publishes ``document.batch.completed``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wharf_common import deadlines, outbox
from wharf_common.consumer import Delivery
from wharf_common.db import Connection, claim_message
from wharf_common.envelope import Envelope
from wharf_common.errors import InvalidMessage, NotFound, Unprocessable
from wharf_documents import idempotency, templates
from wharf_documents.bundle import merge_pdfs, zip_pdfs
from wharf_documents.context import BATCH_QUEUE, BUNDLE_QUEUE, SCHEMA
from wharf_documents.intake import check_data, job_deadline, render_command
from wharf_documents.models import BatchItemsQuery, NewBatch

if TYPE_CHECKING:
    from wharf_documents.context import Context

logger = logging.getLogger(__name__)

BUNDLE_COMMAND = "document.batch.bundle"
_BUNDLE_SECONDS = 600.0
_CONTENT_TYPES = {"zip": "application/zip", "pdf": "application/pdf"}


async def create(
    ctx: Context,
    tenant: str,
    correlation_id: str,
    body: NewBatch,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> dict[str, Any]:
    """Accept a batch: store its items and put the first window of them on the bus.

    A repeated idempotency key returns the batch it made first, as jobs.create does.
    """
    items = body.items
    if items is None:
        raise Unprocessable("the batch has no items")
    if len(items) > ctx.settings.batch_max_items:
        raise Unprocessable(f"a batch holds at most {ctx.settings.batch_max_items} items")
    for item in items:
        check_data(ctx, item.data)
    template = await templates.resolve(ctx, tenant, body.template, body.version)
    deadline = job_deadline(ctx, body.deadline_seconds)
    batch_id = uuid.uuid4()

    async with ctx.db.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            f"INSERT INTO {SCHEMA}.batches (id, tenant, template_id, total, bundle_format,"
            " deadline, idempotency_key, request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (tenant, idempotency_key) DO NOTHING RETURNING id",
            batch_id,
            tenant,
            template["id"],
            len(items),
            body.bundle,
            deadline,
            idempotency_key,
            request_hash,
        )
        if inserted is None:
            # The same key won a race with this request: answer with its batch.
            assert idempotency_key is not None
            again = await by_idempotency_key(ctx, tenant, idempotency_key, request_hash)
            assert again is not None
            return again
        await conn.executemany(
            f"INSERT INTO {SCHEMA}.jobs (id, tenant, template_id, data, filename,"
            " correlation_id, deadline, batch_id, seq, fed)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false)",
            [
                (
                    uuid.uuid4(),
                    tenant,
                    template["id"],
                    item.data,
                    item.filename,
                    correlation_id,
                    deadline,
                    batch_id,
                    seq,
                )
                for seq, item in enumerate(items)
            ],
        )
        await feed(conn, batch_id, ctx.window.target)
    logger.info("accepted batch %s of %d items", batch_id, len(items))
    return await get(ctx, tenant, batch_id)


async def by_idempotency_key(
    ctx: Context, tenant: str, key: str, request_hash: str | None
) -> dict[str, Any] | None:
    """The batch the tenant made with this key; 422 when it came with another request."""
    made = await idempotency.made_with(ctx.db, f"{SCHEMA}.batches", tenant, key, request_hash)
    return None if made is None else await get(ctx, tenant, made)


async def feed(conn: Connection, batch_id: uuid.UUID, count: int) -> int:
    """Put the next `count` unfed items of the batch on the bus; return how many went."""
    if count <= 0:
        return 0
    rows = await conn.fetch(
        f"UPDATE {SCHEMA}.jobs SET fed = true WHERE id IN ("
        f" SELECT id FROM {SCHEMA}.jobs WHERE batch_id = $1 AND NOT fed"
        " ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, tenant, deadline, correlation_id",
        batch_id,
        count,
    )
    for row in rows:
        command = render_command(row["id"], row["tenant"], row["deadline"], row["correlation_id"])
        await outbox.enqueue(conn, SCHEMA, command, kind="command", destination=BATCH_QUEUE)
    return len(rows)


async def item_finished(ctx: Context, conn: Connection, batch_id: uuid.UUID, *, ok: bool) -> None:
    """Count a finished item, top the window up, and start the bundle after the last one.

    The update locks the batch row until the transaction ends, so the items
    of one batch finishing at once are counted one after the other, and
    each sees the items the one before fed.
    """
    batch = await conn.fetchrow(
        f"UPDATE {SCHEMA}.batches SET done = done + $2, failed = failed + $3 WHERE id = $1"
        " RETURNING id, tenant, total, done, failed, status",
        batch_id,
        int(ok),
        int(not ok),
    )
    if batch is None:
        return
    in_flight = await conn.fetchval(
        f"SELECT count(*) FROM {SCHEMA}.jobs WHERE batch_id = $1"
        " AND fed AND status IN ('queued', 'rendering')",
        batch_id,
    )
    await feed(conn, batch_id, ctx.window.shortfall(in_flight))
    if batch["done"] + batch["failed"] < batch["total"] or batch["status"] != "rendering":
        return
    if batch["done"] == 0:
        await _finish(conn, batch_id, None, None, "failed", "no item rendered")
        return
    await conn.execute(f"UPDATE {SCHEMA}.batches SET status = 'bundling' WHERE id = $1", batch_id)
    command = Envelope(
        type=BUNDLE_COMMAND,
        tenant=batch["tenant"],
        deadline=deadlines.deadline_in(_BUNDLE_SECONDS),
        body={"batch_id": str(batch_id)},
    )
    await outbox.enqueue(conn, SCHEMA, command, kind="command", destination=BUNDLE_QUEUE)


async def get(ctx: Context, tenant: str, batch_id: uuid.UUID) -> dict[str, Any]:
    """The batch's progress, and a signed URL of its bundle once done."""
    row = await ctx.db.fetchrow(
        f"SELECT * FROM {SCHEMA}.batches WHERE id = $1 AND tenant = $2", batch_id, tenant
    )
    if row is None:
        raise NotFound(f"no document batch {batch_id}")
    failures: dict[str, int] = {}
    if row["failed"]:
        counts = await ctx.db.fetch(
            f"SELECT coalesce(reason, 'unknown') AS reason, count(*) AS n FROM {SCHEMA}.jobs"
            " WHERE batch_id = $1 AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1",
            batch_id,
        )
        failures = {r["reason"]: r["n"] for r in counts}
    # A batch done with failed items names the reason that failed the most,
    # so that a batch cut short by its deadline says so.
    reason = row["reason"] or next(iter(failures), None)
    result: dict[str, Any] = {
        "id": str(row["id"]),
        "status": row["status"],
        "total": row["total"],
        "done": row["done"],
        "failed": row["failed"],
        "failures": failures,
        "bundle_format": row["bundle_format"],
        "bundle_bytes": row["bundle_bytes"],
        "reason": reason,
        "deadline": row["deadline"].isoformat(),
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "url": None,
    }
    if row["status"] == "done" and row["bundle_key"]:
        expires = ctx.settings.signed_url_seconds
        result["url"] = await ctx.store.signed_url(row["bundle_key"], expires_in=expires)
        result["url_expires_at"] = (deadlines.now() + timedelta(seconds=expires)).isoformat()
    return result


async def list_items(
    ctx: Context, tenant: str, batch_id: uuid.UUID, query: BatchItemsQuery
) -> dict[str, Any]:
    """A page of the batch's items in order, each with its outcome; 404 for another tenant's."""
    owned = await ctx.db.fetchval(
        f"SELECT true FROM {SCHEMA}.batches WHERE id = $1 AND tenant = $2", batch_id, tenant
    )
    if owned is None:
        raise NotFound(f"no document batch {batch_id}")
    rows = await ctx.db.fetch(
        f"SELECT id, seq, filename, status, reason, detail FROM {SCHEMA}.jobs"
        " WHERE batch_id = $1 AND seq > $2 AND ($3::text IS NULL OR status = $3)"
        " ORDER BY seq LIMIT $4",
        batch_id,
        -1 if query.cursor is None else query.cursor,
        query.status,
        query.limit + 1,
    )
    page = rows[: query.limit]
    items = [
        {
            "index": row["seq"],
            "filename": row["filename"],
            "status": row["status"],
            # A queued item may hold the reason of an attempt that is retried.
            "reason": row["reason"] if row["status"] == "failed" else None,
            "detail": row["detail"] if row["status"] == "failed" else None,
            "document_id": str(row["id"]),
            "document": f"/v1/documents/{row['id']}",
        }
        for row in page
    ]
    more = len(rows) > query.limit
    return {"items": items, "next_cursor": str(page[-1]["seq"]) if more else None}


async def handle_bundle(ctx: Context, delivery: Delivery) -> None:
    """Bundle a finished batch's PDFs, store the bundle and publish the completion."""
    batch_id = _batch_id(delivery.envelope)
    batch = await ctx.db.fetchrow(
        f"SELECT tenant, bundle_format, status FROM {SCHEMA}.batches WHERE id = $1", batch_id
    )
    if batch is None or batch["status"] != "bundling":
        return
    items = await ctx.db.fetch(
        f"SELECT seq, filename, object_key FROM {SCHEMA}.jobs"
        " WHERE batch_id = $1 AND status = 'done' ORDER BY seq",
        batch_id,
    )
    fmt = batch["bundle_format"]

    with tempfile.TemporaryDirectory(prefix="wharf-bundle-") as tmp:
        # PDFs go to disk one at a time, so the bundle never holds them all in memory.
        sources: list[tuple[str, Path]] = []
        for item in items:
            path = Path(tmp) / f"{item['seq']:06d}.pdf"
            await asyncio.to_thread(path.write_bytes, await ctx.store.get(item["object_key"]))
            sources.append((item["filename"] or f"document-{item['seq'] + 1}.pdf", path))
        target = Path(tmp) / f"bundle.{fmt}"
        if fmt == "pdf":
            await asyncio.to_thread(merge_pdfs, [path for _, path in sources], target)
        else:
            await asyncio.to_thread(zip_pdfs, sources, target)
        # TODO(storage-streaming): upload from the file once ObjectStore.put takes a stream.
        data = await asyncio.to_thread(target.read_bytes)
    key = f"{batch['tenant']}/bundles/{batch_id}.{fmt}"
    await ctx.store.put(key, data, _CONTENT_TYPES[fmt])

    async with ctx.db.acquire() as conn, conn.transaction():
        if not await claim_message(conn, SCHEMA, delivery.envelope.id):
            return
        await _finish(conn, batch_id, key, len(data), "done", None)


async def _finish(
    conn: Connection,
    batch_id: uuid.UUID,
    key: str | None,
    size: int | None,
    status: str,
    reason: str | None,
) -> None:
    row = await conn.fetchrow(
        f"UPDATE {SCHEMA}.batches SET status = $2, bundle_key = $3, bundle_bytes = $4,"
        " reason = $5, finished_at = now() WHERE id = $1 AND status IN ('rendering', 'bundling')"
        " RETURNING tenant, total, done, failed, bundle_format",
        batch_id,
        status,
        key,
        size,
        reason,
    )
    if row is None:
        return
    logger.info("batch %s %s: %d done, %d failed", batch_id, status, row["done"], row["failed"])
    event = Envelope(
        type="document.batch.completed",
        tenant=row["tenant"],
        body={
            "id": str(batch_id),
            "status": status,
            "total": row["total"],
            "done": row["done"],
            "failed": row["failed"],
            "bundle_format": row["bundle_format"],
            "bundle_bytes": size,
            "reason": reason,
        },
    )
    await outbox.enqueue(conn, SCHEMA, event, kind="event", destination=event.type)


async def on_bundle_dead(ctx: Context, envelope: Envelope, reason: str) -> None:
    """A bundle the bus gave up on fails its batch, with the reason."""
    try:
        batch_id = _batch_id(envelope)
    except InvalidMessage:
        return
    async with ctx.db.acquire() as conn, conn.transaction():
        await _finish(conn, batch_id, None, None, "failed", f"bundle failed: {reason}"[:1000])


def _batch_id(envelope: Envelope) -> uuid.UUID:
    try:
        return uuid.UUID(str(envelope.body["batch_id"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidMessage("a bundle command names no batch") from None
