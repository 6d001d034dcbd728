"""Uploaded JSON that a request names by reference instead of carrying inline."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

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
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except _NotJson as exc:
        raise Unprocessable(f"the upload at {field} {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Unprocessable(f"the upload at {field} is not JSON") from None


class _NotJson(ValueError):
    """A value Python's parser accepts but JSON does not have; the gateway refuses it inline."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"holds {name}, which JSON does not allow")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson("holds a number too large for a double")
    return value
