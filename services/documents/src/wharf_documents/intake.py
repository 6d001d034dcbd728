"""What every accepted job shares: its deadline, its data cap and its render command."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wharf_common import deadlines
from wharf_common.envelope import Envelope
from wharf_common.errors import PayloadTooLarge

if TYPE_CHECKING:
    from wharf_documents.context import Context

RENDER_COMMAND = "document.render"


def job_deadline(ctx: Context, seconds: float | None) -> datetime:
    """The absolute deadline of a job asked to finish within `seconds` (or the default)."""
    settings = ctx.settings
    return deadlines.deadline_in(min(seconds or settings.job_deadline, settings.job_max_deadline))


def check_data(ctx: Context, data: dict[str, Any]) -> None:
    """Refuse template data past the size cap."""
    if len(json.dumps(data)) > ctx.settings.max_data_bytes:
        raise PayloadTooLarge(f"data is larger than {ctx.settings.max_data_bytes} bytes")


def render_command(
    job_id: uuid.UUID, tenant: str, deadline: datetime, correlation_id: str | None
) -> Envelope:
    """The command that asks a consumer to render job `job_id`."""
    envelope = Envelope(
        type=RENDER_COMMAND, tenant=tenant, deadline=deadline, body={"job_id": str(job_id)}
    )
    if correlation_id:
        envelope.correlation_id = correlation_id
    return envelope
