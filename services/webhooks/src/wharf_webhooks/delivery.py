"""Delivering events to endpoints: scheduled from the database, isolated per endpoint.

The event consumer only writes rows: an event, and one delivery per
subscribed endpoint, due now. A `Dispatcher` in every task claims due
deliveries with ``FOR UPDATE SKIP LOCKED`` and leases them (moving their
next attempt past the request timeout), so tasks share the work without
sending a delivery twice at once, and a task that dies hands its leases
back when they run out.

No endpoint can hold up another: each endpoint has at most
`webhook_endpoint_concurrency` deliveries in flight per task, each request
has `webhook_timeout` in total, and a claim takes at most that many rows of
any one endpoint, so a dead endpoint's backlog never fills the workers.

A failed delivery is retried with doubling back-off until
`webhook_retry_for` seconds after it was created, then marked failed.
Redirects are never followed; a destination that resolves to a non-public
address fails at once. Deleting an endpoint cancels its pending deliveries;
an attempt already in flight finishes and is recorded, but its delivery
stays cancelled and is never claimed again.

Delivery is at least once: every attempt of one delivery carries the same
``Wharf-Delivery-Id``, so a receiver deduplicates retries on it; a replay is
a new delivery of the same ``Wharf-Event-Id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg

from wharf_common import deadlines
from wharf_webhooks import __version__, signing
from wharf_webhooks.addresses import GuardedResolver, RefusedDestination, check_url
from wharf_webhooks.sealing import SealError, SecretBox
from wharf_webhooks.settings import WebhookSettings

logger = logging.getLogger(__name__)

_LEASE_MARGIN = 30.0


class Dispatcher:
    """Claims due deliveries and sends them, within per-endpoint and per-task limits."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], settings: WebhookSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._box = SecretBox(settings.sealing_keys())
        self._busy: dict[uuid.UUID, int] = defaultdict(int)
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; then wait for the requests in flight."""
        s = self._settings
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(s.webhook_allowed_hosts), limit=0, force_close=True
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            try:
                while True:
                    self._wake.clear()
                    claimed = await self._claim()
                    for row in claimed:
                        task = asyncio.create_task(self._deliver(session, row))
                        self._running.add(task)
                        task.add_done_callback(self._finished)
                    if not claimed or len(self._running) >= s.webhook_workers:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), s.webhook_poll_interval)
            finally:
                if self._running:
                    await asyncio.wait(self._running, timeout=s.webhook_timeout)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _claim(self) -> list[asyncpg.Record]:
        s = self._settings
        free = s.webhook_workers - len(self._running)
        if free <= 0:
            return []
        limit = s.webhook_endpoint_concurrency
        full = [endpoint for endpoint, n in self._busy.items() if n >= limit]
        async with self._pool.acquire() as conn, conn.transaction():
            candidates = await conn.fetch(
                "SELECT id, endpoint_id FROM ("
                " SELECT d.id, d.endpoint_id, d.next_attempt_at, row_number() OVER"
                " (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS rank"
                " FROM webhooks.deliveries d"
                " JOIN webhooks.endpoints e ON e.id = d.endpoint_id AND e.deleted_at IS NULL"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
                " AND NOT (d.endpoint_id = ANY($1::uuid[]))) due"
                " WHERE rank <= $2 ORDER BY next_attempt_at, id LIMIT $3",
                full,
                limit,
                free * 4,
            )
            picked: list[int] = []
            taken: dict[uuid.UUID, int] = defaultdict(int)
            for row in candidates:
                endpoint = row["endpoint_id"]
                if self._busy[endpoint] + taken[endpoint] >= limit or len(picked) >= free:
                    continue
                taken[endpoint] += 1
                picked.append(row["id"])
            if not picked:
                return []
            rows = await conn.fetch(
                "SELECT d.id, d.tenant, d.endpoint_id, d.event_id, d.attempts, d.created_at,"
                " e.url, e.secret, ev.type, ev.payload"
                " FROM webhooks.deliveries d"
                " JOIN webhooks.endpoints e ON e.id = d.endpoint_id"
                " JOIN webhooks.events ev ON ev.tenant = d.tenant AND ev.id = d.event_id"
                " WHERE d.id = ANY($1::bigint[]) AND d.status = 'pending'"
                " AND e.deleted_at IS NULL"
                " AND d.next_attempt_at <= now() FOR UPDATE OF d SKIP LOCKED",
                picked,
            )
            await conn.execute(
                "UPDATE webhooks.deliveries SET next_attempt_at = now() + make_interval(secs => $2)"
                " WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
                s.webhook_timeout + _LEASE_MARGIN,
            )
        for row in rows:
            self._busy[row["endpoint_id"]] += 1
        return rows

    async def _deliver(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> None:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        refused = False
        try:
            status = await self._send(session, row)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except RefusedDestination as exc:
            refused, error = True, f"refused: {exc}"
        except SealError as exc:
            # The keys are misconfigured: retried, so fixing them delivers it.
            error = f"cannot sign: {exc}"
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, RefusedDestination)
            error = f"refused: {exc.os_error}" if refused else f"cannot connect: {exc.os_error}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            self._busy[row["endpoint_id"]] -= 1
        elapsed = (time.perf_counter() - started) * 1000
        try:
            await self._record(row, status, error, refused, elapsed)
        except Exception:
            # The lease runs out and the delivery is tried again.
            logger.exception("recording a webhook delivery failed")
        logger.info(
            "delivered %s to endpoint %s in %.1f ms: %s",
            row["type"],
            row["endpoint_id"],
            elapsed,
            error or status,
            extra={"tenant_id": row["tenant"], "delivery_id": row["id"]},
        )

    async def _send(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> int:
        check_url(row["url"], self._settings.webhook_allowed_hosts)
        body = row["payload"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Wharf-Webhooks/{__version__}",
            "Wharf-Event-Id": str(row["event_id"]),
            "Wharf-Event-Type": row["type"],
            "Wharf-Delivery-Id": str(row["id"]),
            signing.SIGNATURE_HEADER: signing.signature(self._box.open(row["secret"]), body),
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout)
        async with session.post(
            row["url"], data=body, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            return response.status

    async def _record(
        self,
        row: asyncpg.Record,
        status: int | None,
        error: str | None,
        refused: bool,
        elapsed_ms: float,
    ) -> None:
        s = self._settings
        attempt = row["attempts"] + 1
        delay = min(s.webhook_retry_max, s.webhook_retry_base * 2 ** (attempt - 1))
        give_up_at = row["created_at"] + timedelta(seconds=s.webhook_retry_for)
        retry_at = deadlines.now() + timedelta(seconds=delay)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO webhooks.attempts (delivery_id, endpoint_id, tenant, attempt,"
                " status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                row["id"],
                row["endpoint_id"],
                row["tenant"],
                attempt,
                status,
                error,
                elapsed_ms,
            )
            if error is None:
                outcome, next_at = "delivered", None
            elif refused or retry_at > give_up_at:
                outcome, next_at = "failed", None
            else:
                outcome, next_at = "pending", retry_at
            # Only a pending delivery moves on: one cancelled while this attempt
            # was in flight (its endpoint deleted) stays cancelled.
            await conn.execute(
                "UPDATE webhooks.deliveries SET status = $2, attempts = $3, last_error = $4,"
                " next_attempt_at = coalesce($5, next_attempt_at),"
                " finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END"
                " WHERE id = $1 AND status = 'pending'",
                row["id"],
                outcome,
                attempt,
                error,
                next_at,
            )


def attempt_row(row: asyncpg.Record) -> dict[str, Any]:
    """One attempt as the tenant sees it: its own outcome, and its delivery's status now."""
    return {
        "delivery_id": row["delivery_id"],
        "event_id": str(row["event_id"]),
        "event_type": row["type"],
        "replay": row["replay"],
        "attempt": row["attempt"],
        "attempted_at": row["attempted_at"].isoformat(),
        "attempt_outcome": "succeeded" if row["error"] is None else "failed",
        "status_code": row["status_code"],
        "error": row["error"],
        "duration_ms": round(row["duration_ms"], 1),
        "current_delivery_status": row["status"],
    }
