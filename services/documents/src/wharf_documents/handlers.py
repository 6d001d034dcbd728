"""The documents service's RPC operations, as the gateway calls them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, Forbidden, Unprocessable
from wharf_documents import batches, idempotency, jobs, templates, uploads
from wharf_documents.context import Context
from wharf_documents.models import BatchItemsQuery, NewBatch, NewDocument, NewTemplate

Operation = Callable[[Context, str, Envelope], Awaitable[Any]]


async def _create_template(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await templates.create(ctx, tenant, NewTemplate.model_validate(_data(envelope)))


async def _list_templates(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await templates.list_all(ctx, tenant)


async def _create_document(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    key = idempotency.key_of(envelope)
    data = _data(envelope)
    body = NewDocument.model_validate(data)
    if body.data_ref is not None:
        limit = ctx.settings.max_data_bytes
        loaded = await uploads.load_json(ctx, tenant, body.data_ref, "data_ref", limit)
        fields = {name: value for name, value in data.items() if name != "data_ref"}
        body = NewDocument.model_validate({**fields, "data": loaded})
    request = idempotency.request_hash(data) if key is not None else None
    return await jobs.create(ctx, tenant, envelope.correlation_id, body, key, request)


async def _get_document(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await jobs.get(ctx, tenant, _id(envelope))


async def _create_batch(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    key = idempotency.key_of(envelope)
    data = _data(envelope)
    body = NewBatch.model_validate(data)
    request = idempotency.request_hash(data) if key is not None else None
    if key is not None:
        existing = await batches.by_idempotency_key(ctx, tenant, key, request)
        if existing is not None:
            return existing
    if body.items_ref is not None:
        limit = ctx.settings.max_items_ref_bytes
        loaded = await uploads.load_json(ctx, tenant, body.items_ref, "items_ref", limit)
        if not isinstance(loaded, list):
            raise Unprocessable("the upload at items_ref must hold a JSON array of items")
        fields = {name: value for name, value in data.items() if name != "items_ref"}
        body = NewBatch.model_validate({**fields, "items": loaded})
    return await batches.create(ctx, tenant, envelope.correlation_id, body, key, request)


async def _get_batch(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    return await batches.get(ctx, tenant, _id(envelope))


async def _list_batch_items(ctx: Context, tenant: str, envelope: Envelope) -> Any:
    data = _data(envelope)
    query = BatchItemsQuery.model_validate({k: v for k, v in data.items() if k != "id"})
    return await batches.list_items(ctx, tenant, _id(envelope), query)


OPERATIONS: dict[str, Operation] = {
    "documents.create_template": _create_template,
    "documents.list_templates": _list_templates,
    "documents.create_document": _create_document,
    "documents.get_document": _get_document,
    "documents.create_batch": _create_batch,
    "documents.get_batch": _get_batch,
    "documents.list_batch_items": _list_batch_items,
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
