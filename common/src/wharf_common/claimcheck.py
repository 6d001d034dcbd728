"""Claim check: large bodies travel through object storage, not the bus."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import TYPE_CHECKING

from wharf_common.envelope import Envelope

if TYPE_CHECKING:
    from wharf_common.storage import ObjectStore

DEFAULT_THRESHOLD = 256 * 1024
PREFIX = "claims"
# How many days before the retention period `expire` looks back for leftovers.
_LOOKBACK_DAYS = 30


async def check_in(envelope: Envelope, store: ObjectStore | None, threshold: int) -> Envelope:
    """Move the body to `store` when it encodes larger than `threshold` bytes."""
    if store is None or envelope.body is None:
        return envelope
    data = json.dumps(envelope.body, separators=(",", ":"), default=str).encode()
    if len(data) <= threshold:
        return envelope
    key = f"{PREFIX}/{envelope.created_at:%Y/%m/%d}/{envelope.id}.json"
    await store.put(key, data, "application/json")
    return envelope.model_copy(update={"body": None, "body_ref": key})


async def check_out(envelope: Envelope, store: ObjectStore | None) -> Envelope:
    """Fetch a body that travelled as a reference, so handlers always see `body`."""
    if envelope.body_ref is None:
        return envelope
    if store is None:
        raise RuntimeError("a message carries a body reference but no object store is configured")
    data = await store.get(envelope.body_ref)
    return envelope.model_copy(update={"body": json.loads(data)})


async def expire(store: ObjectStore, *, retention_days: int, today: date) -> int:
    """Delete the bodies checked in more than `retention_days` before `today`.

    A body must outlive every copy of its message: redeliveries and retries
    take minutes, but a dead letter may wait days for a replay, so the
    retention is counted in days. Bodies are filed by day, so whole days go
    at once; the month before the retention is swept again each time, so a
    day missed while every task was down goes later.
    """
    deleted = 0
    for back in range(retention_days + 1, retention_days + 1 + _LOOKBACK_DAYS):
        day = today - timedelta(days=back)
        deleted += await store.delete_prefix(f"{PREFIX}/{day:%Y/%m/%d}")
    return deleted
