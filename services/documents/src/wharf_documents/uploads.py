"""Uploaded JSON that a request names by reference instead of carrying inline."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from wharf_common import strictjson
from wharf_common.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable

if TYPE_CHECKING:
    from wharf_documents.context import Context


async def load_json(ctx: Context, tenant: str, ref: str, field: str, limit: int) -> Any:
    """The JSON stored at `ref`, an upload of `tenant`'s; `field` names it in errors.

    A ref outside the tenant's uploads answers as a missing one does, so the
    answer never tells whether another tenant's object exists.
    """
    missing = NotFound(f"{field} names no upload of this tenant")
    if not ref.startswith(f"{tenant}/uploads/"):
        raise missing

    try:
        raw = await ctx.store.get(ref)
    except (NotFound, BadRequest):
        raise missing from None
    # TODO(storage-size): check the size before downloading once stores report it.
    if len(raw) > limit:
        raise PayloadTooLarge(f"the upload at {field} is larger than {limit} bytes")

    try:
        return strictjson.loads(raw)
    except strictjson.NotJson as exc:
        raise Unprocessable(f"the upload at {field} {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Unprocessable(f"the upload at {field} is not JSON") from None
