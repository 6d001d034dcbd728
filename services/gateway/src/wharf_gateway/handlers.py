"""Handlers of the routes auth and documents answer."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from wharf_common.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from wharf_gateway import models
from wharf_gateway.edge import Call, Edge, check_text
from wharf_gateway.routes import Handler

DOCUMENTS_QUEUE = "wharf.documents.rpc"
# The operations that take an Idempotency-Key.
_IDEMPOTENT = frozenset({"documents.create_document", "documents.create_batch"})
_TEMPLATE_FIELDS = frozenset(models.TemplateUpload.model_fields)
_CHUNK = 64 * 1024


def auth_handlers(edge: Edge) -> dict[str, Handler]:
    """Handlers of the auth routes, keyed by operation id."""

    def forward(operation: str, *, status: int = 200, address: bool = False) -> Handler:
        async def handle(call: Call) -> web.StreamResponse:
            data: dict[str, Any] = call.body.model_dump(mode="json") if call.body else {}
            if call.path is not None:
                data.update(call.path.model_dump(mode="json"))
            extra = {"address": call.request.remote} if address else {}
            result = await edge.call_auth(call, operation, data, **extra)
            return web.json_response(result, status=status)

        return handle

    async def jwks(call: Call) -> web.StreamResponse:
        if not edge.tokens.document.get("keys"):
            await edge.tokens.refresh(force=True)
        return web.json_response(
            edge.tokens.document, headers={"Cache-Control": "public, max-age=60"}
        )

    return {
        "post_tenants": forward("auth.create_tenant", status=201),
        "post_auth_token": forward("auth.token", address=True),
        "post_auth_refresh": forward("auth.refresh"),
        "post_auth_logout": forward("auth.logout"),
        "get_well_known_jwksjson": jwks,
        "post_users": forward("auth.create_user", status=201),
        "post_api_keys": forward("auth.create_api_key", status=201),
        "delete_api_keys_id": forward("auth.revoke_api_key"),
    }


def document_handlers(edge: Edge) -> dict[str, Handler]:
    """Handlers of the documents routes, keyed by operation id."""

    def forward(operation: str, *, status: int = 200) -> Handler:
        async def handle(call: Call) -> web.StreamResponse:
            data: dict[str, Any] = call.body.model_dump(mode="json") if call.body else {}
            if call.path is not None:
                data.update(call.path.model_dump(mode="json"))
            if call.query is not None:
                data.update(call.query.model_dump(mode="json", exclude_none=True))
            extra: dict[str, Any] = {}
            key = call.idempotency_key
            if key is not None and operation in _IDEMPOTENT:
                extra["idempotency_key"] = key
            result = await edge.call_service(DOCUMENTS_QUEUE, call, operation, data, **extra)
            return web.json_response(result, status=status)

        return handle

    async def upload_template(call: Call) -> web.StreamResponse:
        data = await _template_form(call.request, edge.settings.max_upload_size)
        check_text(data)
        result = await edge.call_service(DOCUMENTS_QUEUE, call, "documents.create_template", data)
        return web.json_response(result, status=201)

    return {
        "post_templates": upload_template,
        "get_templates": forward("documents.list_templates"),
        "post_documents": forward("documents.create_document", status=202),
        "get_documents_id": forward("documents.get_document"),
        "post_document_batches": forward("documents.create_batch", status=202),
        "get_document_batches_id": forward("documents.get_batch"),
        "get_document_batches_id_items": forward("documents.list_batch_items"),
    }


async def _template_form(request: web.Request, limit: int) -> dict[str, Any]:
    """The fields of a template upload; the archive travels as base64."""
    if not request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType("upload a template as multipart/form-data")
    try:
        return await _read_form(request, limit)
    # aiohttp's multipart reader reports a malformed body (bad part headers, a
    # wrong boundary, an unknown part encoding) with these; all are the sender's.
    except (BadHttpMessage, ValueError, RuntimeError) as exc:
        raise BadRequest("the multipart body is malformed") from exc


async def _read_form(request: web.Request, limit: int) -> dict[str, Any]:
    reader = await request.multipart()
    fields: dict[str, Any] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in _TEMPLATE_FIELDS:
            raise BadRequest("a template upload has the fields name, html, css and archive")
        content = await _read(part, limit - total)
        total += len(content)
        if part.name == "archive":
            fields["archive"] = base64.b64encode(content).decode()
            continue
        try:
            fields[part.name] = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadRequest(f"{part.name} is not UTF-8") from None
    return fields


async def _read(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"the upload exceeds {limit} bytes")
    return bytes(data)
