"""Attaching parsed payloads: many payloads per transaction, each acknowledged after commit.

Payload handlers hand their parsed events to an `Attacher` and wait. A few
writer tasks take whatever has queued up while the previous transaction ran
and attach it all in one transaction of set-based statements, so the commit
and the round trips are shared. Each waiting handler returns only once the
transaction holding its payload has committed, and so is acknowledged
after its effect, as before. If a batch fails, its payloads are attached
again one by one, so one bad payload cannot fail the others.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from wharf_common import outbox
from wharf_common.db import Connection, claim_messages
from wharf_common.envelope import Envelope

from .batching import BatchQueue, Waiting
from .db import (
    SCHEMA,
    IngestRecord,
    NumberKey,
    StatusChange,
    advance_status,
    insert_events,
    lock_numbers,
    record_ingests,
)
from .models import ParseResult, Status, TrackingEvent

STATUS_CHANGED = "shipment.status_changed"


@dataclass(frozen=True)
class Attachment:
    """One parsed payload: the command that brought it, and what its adapter found."""

    cause: Envelope
    tenant: str
    ingest: dict[str, Any]
    result: ParseResult


_Waiting = Waiting[Attachment, list[StatusChange]]


class Attacher:
    """Attaches payloads in shared transactions on at most `writers` connections."""

    def __init__(self, pool: asyncpg.Pool[Any], *, writers: int = 2, max_batch: int = 256) -> None:
        self.pool = pool
        self._batches: BatchQueue[Attachment, list[StatusChange]] = BatchQueue(
            self._write, drainers=writers, max_batch=max_batch, name="carrier-ingest-attach"
        )

    async def attach(self, attachment: Attachment) -> list[StatusChange]:
        """Store new events, move shipments forward and queue their status changes."""
        return await self._batches.submit(attachment)

    async def close(self) -> None:
        """Stop the writers; payloads still waiting are handed back to their handlers."""
        await self._batches.close()

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                results = await attach_all(conn, [item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            if len(batch) > 1:
                for waiting in batch:
                    await self._write([waiting])
            elif not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        for (_, future), changes in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(changes)


async def attach_all(conn: Connection, items: list[Attachment]) -> list[list[StatusChange]]:
    """Attach payloads inside the caller's transaction; return each one's status changes.

    A payload whose command was handled before (a redelivery) has no effect.
    Where several payloads move the same shipment, the newest event wins and
    one change is published, as if the older payload had been handled last.
    """
    claimed = await claim_messages(conn, SCHEMA, sorted({item.cause.id for item in items}))
    todo: dict[int, Attachment] = {}
    for index, item in enumerate(items):
        if item.cause.id in claimed:
            claimed.discard(item.cause.id)
            todo[index] = item

    keys = [
        (item.tenant, e.carrier, e.tracking_number)
        for item in todo.values()
        for e in item.result.events
    ]
    await lock_numbers(conn, keys)
    rows = [
        (item.tenant, item.ingest["payload_ref"], _ingest_id(item), e)
        for item in todo.values()
        for e in item.result.events
    ]
    stored = await insert_events(conn, rows)
    fresh = {index: _take_fresh(item, stored) for index, item in todo.items()}

    newest = _newest_each(todo, fresh)
    moved = await advance_status(conn, [(key[0], event) for key, (_, event) in newest.items()])
    changes: list[list[StatusChange]] = [[] for _ in items]
    for key, (index, _) in newest.items():
        changes[index].extend(moved.get(key, []))
    envelopes = [
        status_changed(items[index].cause, change) for index in todo for change in changes[index]
    ]
    await outbox.enqueue_many(conn, SCHEMA, envelopes, kind="event", destination=STATUS_CHANGED)

    records = {
        (item.tenant, _ingest_id(item)): IngestRecord(
            tenant=item.tenant,
            ingest=item.ingest,
            outcome=_outcome(item.result, len(fresh[index])),
            result=item.result,
            stored=len(fresh[index]),
            status_changes=len(changes[index]),
        )
        for index, item in todo.items()
    }
    await record_ingests(conn, list(records.values()))
    return changes


def status_changed(cause: Envelope, change: StatusChange) -> Envelope:
    """The `shipment.status_changed` event for one change."""
    body = {
        "shipment_id": str(change.shipment_id),
        "carrier": change.carrier,
        "tracking_number": change.tracking_number,
        "reference": change.reference,
        "previous_status": change.previous,
        "status": change.status,
        "status_at": change.status_at.isoformat(),
        "event_id": change.event_id,
    }
    return cause.child(STATUS_CHANGED, body, deadline=None)


def _ingest_id(item: Attachment) -> uuid.UUID:
    return uuid.UUID(str(item.ingest["ingest_id"]))


def _take_fresh(item: Attachment, stored: set[Any]) -> list[TrackingEvent]:
    # Each stored row counts for the first payload of the batch that carried it.
    fresh = []
    for event in item.result.events:
        key = (item.tenant, _ingest_id(item), event.carrier, event.event_id)
        if key in stored:
            stored.discard(key)
            fresh.append(event)
    return fresh


def _newest_each(
    todo: dict[int, Attachment], fresh: dict[int, list[TrackingEvent]]
) -> dict[NumberKey, tuple[int, TrackingEvent]]:
    # An event no rule could classify is kept in the history but never becomes
    # the current status: "unknown" would hide what is known.
    newest: dict[NumberKey, tuple[int, TrackingEvent]] = {}
    for index, events in fresh.items():
        for event in events:
            if event.status is Status.UNKNOWN:
                continue
            key = (todo[index].tenant, event.carrier, event.tracking_number)
            if key not in newest or event.occurred_at > newest[key][1].occurred_at:
                newest[key] = (index, event)
    return newest


def _outcome(result: ParseResult, stored: int) -> str:
    if result.events:
        return "events" if stored else "duplicate"
    if result.not_found:
        return "not_found"
    if result.errors:
        return "carrier_error"
    return "empty"
