"""The documents service's RPC operations, as the gateway calls them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, Forbidden
from wharf_documents import batches, jobs, templates, uploads
from wharf_documents.context import Context
from wharf_documents.models import NewBatch, NewDocument, NewTemplate

Operation = Callable[[Context, str, Envelope], Awaitable[Any]]

_IDEMPOTENCY_KEY_LIMIT = 200


async def _create_template(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await templates.create(ctx, tenant, NewTemplate.model_validate(_data(envelope)))


async def _list_templates(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await templates.list_all(ctx, tenant)


async def _create_document(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    key = envelope.body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= _IDEMPOTENCY_KEY_LIMIT):
        raise BadRequest(f"Idempotency-Key must be 1 to {_IDEMPOTENCY_KEY_LIMIT} characters")
    data = _data(envelope)
    body = NewDocument.model_validate(data)
    if body.data_ref is not None:
        limit = ctx.settings.max_data_bytes
        loaded = await uploads.load_json(ctx, tenant, body.data_ref, "data_ref", limit)
        fields = {name: value for name, value in data.items() if name != "data_ref"}
        body = NewDocument.model_validate({**fields, "data": loaded})
    return await jobs.create(ctx, tenant, envelope.correlation_id, body, key)


async def _get_document(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await jobs.get(ctx, tenant, _id(envelope))


async def _create_batch(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    data = _data(envelope)
    body = NewBatch.model_validate(data)
    if body.items_ref is not None:
        limit = ctx.settings.max_items_ref_bytes
        loaded = await uploads.load_json(ctx, tenant, body.items_ref, "items_ref", limit)
        fields = {name: value for name, value in data.items() if name != "items_ref"}
        body = NewBatch.model_validate({**fields, "items": loaded})
    return await batches.create(ctx, tenant, envelope.correlation_id, body)


async def _get_batch(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await batches.get(ctx, tenant, _id(envelope))


OPERATIONS: dict[str, Operation] = {
    "documents.create_template": _create_template,
    "documents.list_templates": _list_templates,
    "documents.create_document": _create_document,
    "documents.get_document": _get_document,
    "documents.create_batch": _create_batch,
    "documents.get_batch": _get_batch,
}


async def handle(ctx: Context, envelope: Envelope) -> Any:
    """Answer one RPC request for the tenant the gateway verified."""
    operation = OPERATIONS.get(envelope.type)
    if operation is None:
        raise BadRequest(f"unknown operation {envelope.type!r}")
    if not envelope.tenant:
        raise Forbidden("the request names no tenant")
    return await operation(ctx, envelope.tenant, envelope)


def _data(envelope: Envelope) -> dict[str, Any]:
    data = (envelope.body or {}).get("data")
    if not isinstance(data, dict):
        raise BadRequest("the request has no data")
    return data


def _id(envelope: Envelope) -> uuid.UUID:
    try:
        return uuid.UUID(str(_data(envelope)["id"]))
    except (KeyError, ValueError):
        raise BadRequest("the request names no valid id") from None
