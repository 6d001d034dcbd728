"""Request bodies of the webhook operations."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from wharf_common import events


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateEndpoint(_Body):
    """An HTTPS endpoint and the event types it wants."""

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=100)

    @field_validator("event_types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(events.event_types()))
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return sorted(set(value))


class EndpointId(_Body):
    """An operation on one endpoint."""

    id: uuid.UUID


class Deliveries(_Body):
    """A page of one endpoint's delivery attempts, newest first."""

    id: uuid.UUID
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200)


class Replay(_Body):
    """Send again the endpoint's events that occurred since a time."""

    id: uuid.UUID
    since: AwareDatetime
