"""Versioned templates: uploads make a new version; renders load a version by id."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wharf_common.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable
from wharf_documents.archive import read_archive
from wharf_documents.context import SCHEMA
from wharf_documents.errors import TemplateError, TooLarge
from wharf_documents.models import NewTemplate
from wharf_documents.templating import check_syntax

if TYPE_CHECKING:
    from wharf_documents.context import Context


@dataclass(frozen=True, slots=True)
class Template:
    """One template version, ready to render."""

    id: uuid.UUID
    html: str
    css: str | None
    assets: dict[str, bytes]


async def create(ctx: Context, tenant: str, body: NewTemplate) -> dict[str, Any]:
    """Store a new version of the tenant's template `body.name`; return its description."""
    if (body.html is None) == (body.archive is None):
        raise BadRequest("send either html (with optional css) or archive")
    html, css, archive = body.html, body.css, None
    if body.archive is not None:
        archive = _decode(body.archive, ctx.settings.max_upload_bytes)
        try:
            unpacked = read_archive(archive, max_bytes=ctx.settings.render_max_assets_bytes)
        except TooLarge as exc:
            raise PayloadTooLarge(exc.message) from None
        except TemplateError as exc:
            raise BadRequest(exc.message) from None
        html = unpacked.html
    assert html is not None
    try:
        check_syntax(html)
    except TemplateError as exc:
        raise Unprocessable(exc.message) from None
    size = len(html.encode()) + len((css or "").encode())
    if size > ctx.settings.render_max_template_bytes:
        raise PayloadTooLarge(
            f"the template is larger than {ctx.settings.render_max_template_bytes} bytes"
        )

    template_id = uuid.uuid4()
    assets_key = None
    if archive is not None:
        assets_key = f"{tenant}/templates/{template_id}.zip"
        await ctx.store.put(assets_key, archive, "application/zip")
    async with ctx.db.acquire() as conn, conn.transaction():
        # Versions of one name are numbered in turn; the lock orders concurrent uploads.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{tenant}/{body.name}"
        )
        row = await conn.fetchrow(
            f"INSERT INTO {SCHEMA}.templates"
            " (id, tenant, name, version, html, css, assets_key, assets_bytes)"
            " SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5, $6, $7"
            f" FROM {SCHEMA}.templates WHERE tenant = $2 AND name = $3"
            " RETURNING id, name, version, assets_bytes, created_at",
            template_id,
            tenant,
            body.name,
            html,
            css,
            assets_key,
            len(archive or b""),
        )
    return _describe(row)


async def list_all(ctx: Context, tenant: str) -> dict[str, Any]:
    """Every version of the tenant's templates, newest first within a name."""
    rows = await ctx.db.fetch(
        f"SELECT id, name, version, assets_bytes, created_at FROM {SCHEMA}.templates"
        " WHERE tenant = $1 ORDER BY name, version DESC",
        tenant,
    )
    return {"templates": [_describe(row) for row in rows]}


async def resolve(ctx: Context, tenant: str, name: str, version: int | None) -> Any:
    """The row of template `name` at `version` (the latest when None); 404 when absent."""
    row = await ctx.db.fetchrow(
        f"SELECT id, name, version FROM {SCHEMA}.templates WHERE tenant = $1 AND name = $2"
        " AND ($3::int IS NULL OR version = $3) ORDER BY version DESC LIMIT 1",
        tenant,
        name,
        version,
    )
    if row is None:
        which = f"{name!r} version {version}" if version else repr(name)
        raise NotFound(f"no template {which}")
    return row


def _decode(archive: str, limit: int) -> bytes:
    if len(archive) > limit * 4 // 3 + 4:
        raise PayloadTooLarge(f"the archive is larger than {limit} bytes")
    try:
        return base64.b64decode(archive, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("archive is not base64") from None


def _describe(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "version": row["version"],
        "assets_bytes": row["assets_bytes"],
        "created_at": row["created_at"].isoformat(),
    }


class TemplateCache:
    """Recently used template versions; a version never changes, so entries never go stale."""

    def __init__(self, ctx: Context, size: int) -> None:
        self._ctx = ctx
        self._size = size
        self._entries: OrderedDict[uuid.UUID, Template] = OrderedDict()

    async def get(self, template_id: uuid.UUID) -> Template:
        """The template version `template_id` with its assets unpacked."""
        cached = self._entries.get(template_id)
        if cached is not None:
            self._entries.move_to_end(template_id)
            return cached
        row = await self._ctx.db.fetchrow(
            f"SELECT html, css, assets_key FROM {SCHEMA}.templates WHERE id = $1", template_id
        )
        if row is None:
            raise NotFound(f"template {template_id} is gone")
        assets: dict[str, bytes] = {}
        if row["assets_key"]:
            archive = await self._ctx.store.get(row["assets_key"])
            assets = read_archive(
                archive, max_bytes=self._ctx.settings.render_max_assets_bytes
            ).assets
        template = Template(template_id, row["html"], row["css"], assets)
        if self._size:
            self._entries[template_id] = template
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return template
