"""Idempotency keys: a retried create answers with what the first one made."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, Unprocessable

if TYPE_CHECKING:
    import asyncpg

KEY_LIMIT = 255


def key_of(envelope: Envelope) -> str | None:
    """The request's idempotency key, as the gateway forwarded it."""
    key = (envelope.body or {}).get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= KEY_LIMIT):
        raise BadRequest(f"Idempotency-Key must be 1 to {KEY_LIMIT} characters")
    return key


def request_hash(data: dict[str, Any]) -> str:
    """A hash of the request's fields that does not depend on their order or spacing."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_same(stored: str | None, current: str) -> None:
    """Refuse a key reused for another request; a key stored without a hash matches any."""
    if stored is not None and stored != current:
        raise Unprocessable("Idempotency-Key reused with a different request")


async def made_with(
    db: asyncpg.Pool, table: str, tenant: str, key: str, request_hash: str | None
) -> uuid.UUID | None:
    """The id of the row (`table`: schema-qualified jobs or batches) the tenant made with `key`.

    422 when the key first came with another request.
    """
    row = await db.fetchrow(
        f"SELECT id, request_hash FROM {table} WHERE tenant = $1 AND idempotency_key = $2",
        tenant,
        key,
    )
    if row is None:
        return None
    if request_hash is not None:
        check_same(row["request_hash"], request_hash)
    made: uuid.UUID = row["id"]
    return made
