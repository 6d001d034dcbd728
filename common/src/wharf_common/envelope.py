"""The message envelope every message on the bus travels in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wharf_common import deadlines

CONTENT_TYPE = "application/vnd.wharf.envelope+json"


class Envelope(BaseModel):
    """Metadata and body of one message.

    Fields a reader does not know are ignored, so two versions of a service
    can run side by side during a rolling deploy. Exactly one of `body` and
    `body_ref` is set: a large body travels as an object-storage reference
    (claim check) and is resolved before a handler sees it.
    """

    model_config = ConfigDict(extra="ignore", frozen=False)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int = 1
    tenant: str | None = None
    correlation_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    deadline: datetime | None = None
    created_at: datetime = Field(default_factory=deadlines.now)
    body: Any = None
    body_ref: str | None = None

    def child(self, type: str, body: Any, **changes: Any) -> Envelope:
        """Return a new envelope for work caused by this one.

        The child keeps the tenant, correlation id and deadline, so a request's
        whole path can be traced and bounded.
        """
        fields: dict[str, Any] = {
            "type": type,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "deadline": self.deadline,
            "body": body,
        }
        fields.update(changes)
        return Envelope(**fields)

    def encode(self) -> bytes:
        """Serialise to the JSON bytes that go on the wire."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse wire bytes; raises pydantic.ValidationError when they are not an envelope."""
        return cls.model_validate_json(data)
