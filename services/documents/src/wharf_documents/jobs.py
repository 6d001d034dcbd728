"""Render jobs: accepted over RPC, rendered by a command consumer, reported by events.

A job row is written together with its render command in one transaction
(through the outbox), so an accepted job is never lost. The consumer claims
the message, renders within the render budget and the job's deadline,
stores the PDF, then records the outcome and its event in one transaction.
A failure that can never succeed (a template error, a refused fetch, a
deadline, running out of memory) fails the job at once; a crashed worker is
retried by the bus, once: a job whose render crashes its worker twice in a row
fails as worker_crashed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from wharf_common import deadlines, outbox
from wharf_common.consumer import Delivery
from wharf_common.db import Connection, claim_message
from wharf_common.envelope import Envelope
from wharf_common.errors import ClientError, InvalidMessage, NotFound
from wharf_documents import batches, idempotency, templates
from wharf_documents.context import BATCH_QUEUE, RENDER_QUEUE, SCHEMA
from wharf_documents.errors import RenderError, WorkerCrashed
from wharf_documents.intake import check_data, job_deadline, render_command
from wharf_documents.models import NewDocument
from wharf_documents.render import RenderRequest

if TYPE_CHECKING:
    from wharf_documents.context import Context

logger = logging.getLogger(__name__)

_DETAIL_LIMIT = 1000
# The previous attempt's reason is kept while a job waits for its retry, so a
# second crash in a row is seen; the render itself is then the likely cause.
_CRASHED_AGAIN = (
    "%s on two attempts in a row, so the render is not retried; one that passes"
    " the worker memory limit inside a native library can end this way"
)


async def create(
    ctx: Context,
    tenant: str,
    correlation_id: str,
    body: NewDocument,
    idempotency_key: str | None,
    request_hash: str | None = None,
) -> dict[str, Any]:
    """Accept one document; a repeated idempotency key returns the job it made first.

    The key is refused (422) when the request it first came with differs.
    """
    check_data(ctx, body.data)
    if idempotency_key is not None:
        existing = await _by_idempotency_key(ctx, tenant, idempotency_key, request_hash)
        if existing is not None:
            return existing
    template = await templates.resolve(ctx, tenant, body.template, body.version)
    deadline = job_deadline(ctx, body.deadline_seconds)
    job_id = uuid.uuid4()

    async with ctx.db.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            f"INSERT INTO {SCHEMA}.jobs (id, tenant, template_id, data, filename,"
            " idempotency_key, request_hash, correlation_id, deadline)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (tenant, idempotency_key) DO NOTHING RETURNING id",
            job_id,
            tenant,
            template["id"],
            body.data,
            body.filename,
            idempotency_key,
            request_hash,
            correlation_id,
            deadline,
        )
        if inserted is not None:
            command = render_command(job_id, tenant, deadline, correlation_id)
            await outbox.enqueue(conn, SCHEMA, command, kind="command", destination=RENDER_QUEUE)
    if inserted is None:
        assert idempotency_key is not None
        again = await _by_idempotency_key(ctx, tenant, idempotency_key, request_hash)
        assert again is not None
        return again
    return await get(ctx, tenant, job_id)


async def _by_idempotency_key(
    ctx: Context, tenant: str, key: str, request_hash: str | None
) -> dict[str, Any] | None:
    made = await idempotency.made_with(ctx.db, f"{SCHEMA}.jobs", tenant, key, request_hash)
    return None if made is None else await get(ctx, tenant, made)


async def get(ctx: Context, tenant: str, job_id: uuid.UUID) -> dict[str, Any]:
    """The job's status, and a signed URL of its PDF once done; 404 for another tenant's."""
    row = await ctx.db.fetchrow(
        f"SELECT j.*, t.name AS template, t.version FROM {SCHEMA}.jobs j"
        f" JOIN {SCHEMA}.templates t ON t.id = j.template_id WHERE j.id = $1 AND j.tenant = $2",
        job_id,
        tenant,
    )
    if row is None:
        raise NotFound(f"no document {job_id}")
    result: dict[str, Any] = {
        "id": str(row["id"]),
        "status": row["status"],
        "template": row["template"],
        "version": row["version"],
        "filename": row["filename"],
        "pages": row["pages"],
        "bytes": row["bytes"],
        "reason": row["reason"],
        "detail": row["detail"],
        "batch_id": str(row["batch_id"]) if row["batch_id"] else None,
        "deadline": row["deadline"].isoformat(),
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "url": None,
    }
    if row["status"] == "done" and row["object_key"]:
        expires = ctx.settings.signed_url_seconds
        result["url"] = await ctx.store.signed_url(row["object_key"], expires_in=expires)
        result["url_expires_at"] = (deadlines.now() + timedelta(seconds=expires)).isoformat()
    return result


async def handle_render(ctx: Context, delivery: Delivery) -> None:
    """Render the job a command names, store its PDF and record the outcome."""
    envelope = delivery.envelope
    job_id = _job_id(envelope)
    job = await ctx.db.fetchrow(
        f"UPDATE {SCHEMA}.jobs SET status = 'rendering', attempts = attempts + 1,"
        " started_at = coalesce(started_at, now())"
        " WHERE id = $1 AND tenant = $2 AND status IN ('queued', 'rendering')"
        " RETURNING id, tenant, template_id, data, deadline, reason",
        job_id,
        envelope.tenant,
    )
    if job is None:
        logger.debug("job %s is finished or unknown; nothing to do", job_id)
        return

    try:
        template = await ctx.templates.get(job["template_id"])
        request = RenderRequest(
            template=template.html,
            data=job["data"],
            css=template.css,
            assets=template.assets,
            deadline=job["deadline"],
        )
        async with ctx.gate.slot(batch=delivery.queue == BATCH_QUEUE):
            result = await ctx.renderer.render(request)
    except RenderError as exc:
        if isinstance(exc, WorkerCrashed) and job["reason"] == WorkerCrashed.reason:
            await finish_failed(ctx, envelope, job_id, exc.reason, _CRASHED_AGAIN % exc.message)
            return
        if exc.retryable:
            await _note_retry(ctx, job_id, exc)
            raise
        await finish_failed(ctx, envelope, job_id, exc.reason, exc.message)
        return
    except ClientError as exc:
        await finish_failed(ctx, envelope, job_id, "template_missing", exc.detail)
        return

    key = f"{job['tenant']}/documents/{job_id}.pdf"
    await ctx.store.put(key, result.pdf, "application/pdf")
    async with ctx.db.acquire() as conn, conn.transaction():
        if not await claim_message(conn, SCHEMA, envelope.id):
            return
        row = await conn.fetchrow(
            f"UPDATE {SCHEMA}.jobs SET status = 'done', pages = $2, bytes = $3, object_key = $4,"
            " reason = NULL, detail = NULL, finished_at = now()"
            " WHERE id = $1 AND status NOT IN ('done', 'failed') RETURNING batch_id",
            job_id,
            result.pages,
            len(result.pdf),
            key,
        )
        if row is None:
            return
        event = envelope.child(
            "document.rendered",
            {
                "id": str(job_id),
                "pages": result.pages,
                "bytes": len(result.pdf),
                "batch_id": str(row["batch_id"]) if row["batch_id"] else None,
            },
            deadline=None,
        )
        await outbox.enqueue(conn, SCHEMA, event, kind="event", destination=event.type)
        if row["batch_id"] is not None:
            await batches.item_finished(ctx, conn, row["batch_id"], ok=True)


async def _note_retry(ctx: Context, job_id: uuid.UUID, exc: RenderError) -> None:
    logger.warning("render of %s failed (%s); the bus retries it", job_id, exc.reason)
    await ctx.db.execute(
        f"UPDATE {SCHEMA}.jobs SET status = 'queued', reason = $2, detail = $3"
        " WHERE id = $1 AND status = 'rendering'",
        job_id,
        exc.reason,
        exc.message[:_DETAIL_LIMIT],
    )


async def finish_failed(
    ctx: Context, envelope: Envelope, job_id: uuid.UUID, reason: str, detail: str
) -> None:
    """Fail the job for `reason`, publish document.failed and count it in its batch."""
    async with ctx.db.acquire() as conn, conn.transaction():
        await _fail(conn, ctx, envelope, job_id, reason, detail)


async def _fail(
    conn: Connection,
    ctx: Context,
    envelope: Envelope,
    job_id: uuid.UUID,
    reason: str,
    detail: str,
) -> None:
    row = await conn.fetchrow(
        f"UPDATE {SCHEMA}.jobs SET status = 'failed', reason = $2, detail = $3,"
        " finished_at = now() WHERE id = $1 AND status NOT IN ('done', 'failed')"
        " RETURNING batch_id",
        job_id,
        reason,
        detail[:_DETAIL_LIMIT],
    )
    if row is None:
        return
    logger.info("document %s failed: %s", job_id, reason, extra={"reason": reason})
    event = envelope.child(
        "document.failed",
        {
            "id": str(job_id),
            "reason": reason,
            "detail": detail[:_DETAIL_LIMIT],
            "batch_id": str(row["batch_id"]) if row["batch_id"] else None,
        },
        deadline=None,
    )
    await outbox.enqueue(conn, SCHEMA, event, kind="event", destination=event.type)
    if row["batch_id"] is not None:
        await batches.item_finished(ctx, conn, row["batch_id"], ok=False)


async def on_dead(ctx: Context, envelope: Envelope, reason: str) -> None:
    """A render command the bus gave up on: fail its job with the reason, never drop it."""
    try:
        job_id = _job_id(envelope)
    except InvalidMessage:
        return
    if reason.startswith("deadline_exceeded"):
        code = "deadline_exceeded"
    else:
        last = await ctx.db.fetchval(f"SELECT reason FROM {SCHEMA}.jobs WHERE id = $1", job_id)
        code = last or "render_failed"
    await finish_failed(ctx, envelope, job_id, code, reason)


def _job_id(envelope: Envelope) -> uuid.UUID:
    try:
        return uuid.UUID(str(envelope.body["job_id"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidMessage("a render command names no job") from None
