"""Signed upload URLs for inputs too large to send inline."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from aiohttp import web

from wharf_common import deadlines
from wharf_common.errors import PayloadTooLarge, ServiceUnavailable
from wharf_common.storage import ObjectStore
from wharf_gateway.edge import Call, Edge
from wharf_gateway.models import CreateUpload, UploadCreated
from wharf_gateway.routes import Handler


def upload_handlers(edge: Edge, store: Callable[[], ObjectStore]) -> dict[str, Handler]:
    """Handlers of the upload routes, keyed by operation id."""

    async def create_upload(call: Call) -> web.StreamResponse:
        assert call.principal is not None and isinstance(call.body, CreateUpload)
        limit = edge.settings.max_object_upload_size
        if call.body.size > limit:
            raise PayloadTooLarge(f"an upload holds at most {limit} bytes")

        ref = f"{call.principal.tenant}/uploads/{uuid.uuid4()}"
        seconds = edge.settings.upload_url_seconds
        expires_at = deadlines.now() + timedelta(seconds=seconds)
        try:
            signed = await store().signed_upload(
                ref, size=call.body.size, content_type=call.body.content_type, expires_in=seconds
            )
        except Exception as exc:
            raise ServiceUnavailable("object storage is unavailable") from exc

        created = UploadCreated(
            ref=ref, url=signed.url, method="PUT", headers=signed.headers, expires_at=expires_at
        )
        return web.json_response(created.model_dump(mode="json"), status=201)

    return {"post_uploads": create_upload}
