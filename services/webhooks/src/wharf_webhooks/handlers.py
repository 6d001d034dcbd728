"""Webhook management over RPC, and the event consumer that schedules deliveries."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from wharf_common import events
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, Forbidden, NotFound
from wharf_common.subscriber import handled_once
from wharf_webhooks import signing
from wharf_webhooks.addresses import check_endpoint
from wharf_webhooks.delivery import Dispatcher, attempt_row
from wharf_webhooks.models import CreateEndpoint, Deliveries, EndpointId, Replay
from wharf_webhooks.sealing import SecretBox
from wharf_webhooks.settings import WebhookSettings

logger = logging.getLogger(__name__)

SCHEMA = "webhooks"


class Webhooks:
    """The tenant-facing operations and the event intake."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], settings: WebhookSettings, dispatcher: Dispatcher
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.dispatcher = dispatcher
        self.box = SecretBox(settings.sealing_keys())
        self._operations: dict[str, Callable[[str, dict[str, Any]], Awaitable[Any]]] = {
            "webhooks.create": self.create,
            "webhooks.list": self.list,
            "webhooks.delete": self.delete,
            "webhooks.deliveries": self.deliveries,
            "webhooks.replay": self.replay,
        }

    async def answer(self, envelope: Envelope) -> Any:
        """Run one RPC request for the tenant the gateway took from the credential."""
        operation = self._operations.get(envelope.type)
        if operation is None:
            raise BadRequest(f"unknown operation {envelope.type}")
        if not envelope.tenant:
            raise Forbidden("webhook operations need a tenant")
        body = envelope.body if isinstance(envelope.body, dict) else {}
        return await operation(envelope.tenant, body.get("data") or {})

    async def create(self, tenant: str, data: dict[str, Any]) -> Any:
        """Register an endpoint; the answer holds its secret, the only time it is shown."""
        request = CreateEndpoint.model_validate(data)
        await check_endpoint(request.url, self.settings.webhook_allowed_hosts)
        endpoint_id = uuid.uuid4()
        secret = signing.new_secret()
        row = await self.pool.fetchrow(
            "INSERT INTO webhooks.endpoints (id, tenant, url, event_types, secret)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *",
            endpoint_id,
            tenant,
            request.url,
            request.event_types,
            self.box.seal(secret),
        )
        assert row is not None
        return {**_endpoint(row), "secret": secret}

    async def list(self, tenant: str, data: dict[str, Any]) -> Any:
        """The tenant's endpoints, without their secrets."""
        rows = await self.pool.fetch(
            "SELECT * FROM webhooks.endpoints WHERE tenant = $1 AND deleted_at IS NULL"
            " ORDER BY created_at, id",
            tenant,
        )
        return {"items": [_endpoint(row) for row in rows]}

    async def delete(self, tenant: str, data: dict[str, Any]) -> Any:
        """Remove an endpoint and cancel what it still had pending."""
        endpoint_id = EndpointId.model_validate(data).id
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "UPDATE webhooks.endpoints SET deleted_at = now()"
                " WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL RETURNING id",
                tenant,
                endpoint_id,
            )
            if found is None:
                raise NotFound("no such webhook endpoint")
            await conn.execute(
                "UPDATE webhooks.deliveries SET status = 'cancelled', finished_at = now()"
                " WHERE endpoint_id = $1 AND status = 'pending'",
                endpoint_id,
            )
        return {"id": str(endpoint_id), "deleted": True}

    async def deliveries(self, tenant: str, data: dict[str, Any]) -> Any:
        """A page of the endpoint's delivery attempts and their outcomes, newest first."""
        request = Deliveries.model_validate(data)
        before = _decode_cursor(request.cursor) if request.cursor else None
        await self._endpoint(tenant, request.id)
        rows = await self.pool.fetch(
            "SELECT a.*, d.event_id, d.status, d.replay, ev.type FROM webhooks.attempts a"
            " JOIN webhooks.deliveries d ON d.id = a.delivery_id"
            " JOIN webhooks.events ev ON ev.tenant = d.tenant AND ev.id = d.event_id"
            " WHERE a.endpoint_id = $1 AND a.tenant = $2 AND ($3::bigint IS NULL OR a.id < $3)"
            " ORDER BY a.id DESC LIMIT $4",
            request.id,
            tenant,
            before,
            request.limit + 1,
        )
        pending = await self.pool.fetchval(
            "SELECT count(*) FROM webhooks.deliveries"
            " WHERE endpoint_id = $1 AND status = 'pending'",
            request.id,
        )
        page = rows[: request.limit]
        cursor = _encode_cursor(page[-1]["id"]) if len(rows) > request.limit else None
        return {
            "items": [attempt_row(row) for row in page],
            "pending": pending,
            "next_cursor": cursor,
        }

    async def replay(self, tenant: str, data: dict[str, Any]) -> Any:
        """Schedule the endpoint's event types that occurred since a time to be sent again.

        An event that already has a pending delivery to the endpoint is skipped,
        so replaying twice does not double the pending work. At most
        `webhook_replay_limit` deliveries are scheduled, oldest events first.
        """
        request = Replay.model_validate(data)
        async with self.pool.acquire() as conn, conn.transaction():
            # Locking the endpoint makes concurrent replays of it take turns,
            # so each sees what the other scheduled.
            endpoint = await conn.fetchrow(
                "SELECT event_types FROM webhooks.endpoints"
                " WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE",
                tenant,
                request.id,
            )
            if endpoint is None:
                raise NotFound("no such webhook endpoint")
            row = await conn.fetchrow(
                "WITH matched AS (SELECT ev.id, ev.occurred_at, EXISTS (SELECT 1"
                " FROM webhooks.deliveries p WHERE p.endpoint_id = $2 AND p.event_id = ev.id"
                " AND p.status = 'pending') AS pending FROM webhooks.events ev"
                " WHERE ev.tenant = $1 AND ev.occurred_at >= $3 AND ev.type = ANY($4::text[])),"
                " sent AS (INSERT INTO webhooks.deliveries (tenant, endpoint_id, event_id, replay)"
                " SELECT $1, $2, id, true FROM matched WHERE NOT pending"
                " ORDER BY occurred_at LIMIT $5 RETURNING 1)"
                " SELECT (SELECT count(*) FROM sent) AS scheduled,"
                " (SELECT count(*) FROM matched WHERE pending) AS already_pending",
                tenant,
                request.id,
                request.since,
                endpoint["event_types"],
                self.settings.webhook_replay_limit,
            )
        assert row is not None
        self.dispatcher.wake()
        return {
            "id": str(request.id),
            "scheduled": row["scheduled"],
            "already_pending": row["already_pending"],
        }

    async def _endpoint(self, tenant: str, endpoint_id: uuid.UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM webhooks.endpoints WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL",
            tenant,
            endpoint_id,
        )
        if row is None:
            raise NotFound("no such webhook endpoint")
        return row

    async def on_event(self, event: events.Event, delivery: Delivery) -> None:
        """Keep a tenant's event and schedule a delivery to each endpoint that wants it."""
        envelope = delivery.envelope
        if not envelope.tenant:
            return
        payload = json.dumps(
            {
                "id": str(envelope.id),
                "type": envelope.type,
                "schema_version": envelope.schema_version,
                "created_at": envelope.created_at.isoformat(),
                "data": event.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )
        async with handled_once(self.pool, SCHEMA, envelope) as conn:
            if conn is None:
                return
            await conn.execute(
                "INSERT INTO webhooks.events (tenant, id, type, payload, occurred_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                envelope.tenant,
                envelope.id,
                envelope.type,
                payload,
                envelope.created_at,
            )
            await conn.execute(
                "INSERT INTO webhooks.deliveries (tenant, endpoint_id, event_id)"
                " SELECT tenant, id, $2 FROM webhooks.endpoints"
                " WHERE tenant = $1 AND deleted_at IS NULL AND $3 = ANY(event_types)",
                envelope.tenant,
                envelope.id,
                envelope.type,
            )
        self.dispatcher.wake()


def _endpoint(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "created_at": row["created_at"].isoformat(),
    }


def _encode_cursor(attempt_id: int) -> str:
    """An opaque cursor that resumes a delivery history after the attempt."""
    raw = json.dumps([attempt_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """Read a cursor made by `_encode_cursor`; BadRequest when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        (attempt_id,) = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("invalid cursor") from None
    if type(attempt_id) is not int or not 0 < attempt_id < 2**63:
        raise BadRequest("invalid cursor")
    return attempt_id
