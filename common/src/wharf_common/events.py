"""The event catalog: one pydantic model per event type on ``wharf.events``.

An event's contract is its type (the routing key), its major schema version
(the envelope's ``schema_version``) and its body model. A change that a
reader on the previous version could not survive (a field removed, retyped,
or newly required) needs a new major version; `wharf_common.eventcompat`
holds the check, run against a committed snapshot.

Readers ignore body fields they do not know, as they do envelope fields, so
adding an optional field is a compatible change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from wharf_common.envelope import Envelope
from wharf_common.errors import InvalidMessage

E = TypeVar("E", bound="Event")


class Event(BaseModel):
    """Base of every event body; subclasses are registered with `event`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int]
    publisher: ClassVar[str]


_CATALOG: dict[tuple[str, int], type[Event]] = {}


def event(name: str, *, version: int, publisher: str) -> Callable[[type[E]], type[E]]:
    """Register a body model as version `version` of the event type `name`."""

    def register(model: type[E]) -> type[E]:
        key = (name, version)
        if key in _CATALOG:
            raise ValueError(f"{name} v{version} is registered twice")
        model.event_type = name
        model.version = version
        model.publisher = publisher
        _CATALOG[key] = model
        return model

    return register


class ShipmentStatus(StrEnum):
    """A shipment's canonical status (``unknown`` never becomes a current status)."""

    PENDING = "pending"
    INFO_RECEIVED = "info_received"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    EXCEPTION = "exception"
    ON_HOLD = "on_hold"
    RETURNED = "returned"
    CANCELLED = "cancelled"


@event("shipment.status_changed", version=1, publisher="carrier-ingest")
class ShipmentStatusChanged(Event):
    """A shipment's current status moved because a newer tracking event arrived."""

    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str
    reference: str | None = None
    previous_status: ShipmentStatus | None = None
    status: ShipmentStatus
    status_at: AwareDatetime = Field(description="When the carrier saw the status")
    event_id: str = Field(description="The tracking event that caused the change")


@event("document.rendered", version=1, publisher="documents")
class DocumentRendered(Event):
    """A render job finished with a PDF."""

    id: uuid.UUID = Field(description="The render job")
    pages: int
    bytes: int
    batch_id: uuid.UUID | None = None


@event("document.failed", version=1, publisher="documents")
class DocumentFailed(Event):
    """A render job failed for good."""

    id: uuid.UUID = Field(description="The render job")
    reason: str = Field(description="A short machine-readable reason")
    detail: str
    batch_id: uuid.UUID | None = None


@event("document.batch.completed", version=1, publisher="documents")
class DocumentBatchCompleted(Event):
    """Every item of a batch has finished, and its bundle is built or failed."""

    id: uuid.UUID = Field(description="The batch")
    status: Literal["done", "failed"]
    total: int
    done: int
    failed: int
    bundle_format: str
    bundle_bytes: int | None = None
    reason: str | None = None


@event("carrier.documents.completed", version=1, publisher="carrier-ingest")
class CarrierDocumentsCompleted(Event):
    """A carrier-documents job has fetched or given up on every file; its manifest is stored."""

    job_id: uuid.UUID
    carrier: str
    manifest_ref: str = Field(description="Object-storage key of the manifest")
    stored: int
    missing: int


def catalog() -> dict[tuple[str, int], type[Event]]:
    """Every registered (type, major version) and its body model."""
    return dict(_CATALOG)


def event_types() -> list[str]:
    """Every registered event type, sorted."""
    return sorted({name for name, _ in _CATALOG})


def model_for(name: str, version: int | None = None) -> type[Event]:
    """The model of event type `name` at `version` (the newest when None); KeyError if unknown."""
    if version is not None:
        return _CATALOG[(name, version)]
    versions = [v for t, v in _CATALOG if t == name]
    if not versions:
        raise KeyError(name)
    return _CATALOG[(name, max(versions))]


def event_envelope(
    body: Event,
    *,
    tenant: str | None,
    correlation_id: str | None = None,
    cause: Envelope | None = None,
    created_at: datetime | None = None,
) -> Envelope:
    """The envelope that publishes `body`, with its type and schema version set.

    With a `cause`, the event keeps the cause's correlation id; an event never
    carries the cause's deadline, since listeners run on their own time.
    """
    fields: dict[str, Any] = {
        "type": body.event_type,
        "schema_version": body.version,
        "tenant": tenant,
        "body": body.model_dump(mode="json"),
    }
    if correlation_id is not None:
        fields["correlation_id"] = correlation_id
    elif cause is not None:
        fields["correlation_id"] = cause.correlation_id
    if created_at is not None:
        fields["created_at"] = created_at
    return Envelope(**fields)


def parse_event(envelope: Envelope) -> Event:
    """The typed body of an event envelope (its claim-checked body already resolved).

    Raises InvalidMessage, which dead-letters the message at once, for an
    unknown type or version or a body that does not fit its model.
    """
    model = _CATALOG.get((envelope.type, envelope.schema_version))
    if model is None:
        raise InvalidMessage(f"unknown event {envelope.type} v{envelope.schema_version}")
    try:
        return model.model_validate(envelope.body)
    except ValidationError as exc:
        raise InvalidMessage(f"{envelope.type} body does not match its model: {exc}") from exc


def contract_problems(envelope: Envelope) -> list[str]:
    """What a published envelope gets wrong against the catalog; empty when it conforms.

    Stricter than `parse_event`: a publisher must not send fields its model
    does not declare, or the catalog no longer describes the bus.
    """
    key = (envelope.type, envelope.schema_version)
    model = _CATALOG.get(key)
    if model is None:
        return [f"{envelope.type} v{envelope.schema_version} is not in the event catalog"]
    if not isinstance(envelope.body, dict):
        return [f"{envelope.type}: the body is not an object"]
    problems = [
        f"{envelope.type}: undeclared field {name!r}"
        for name in sorted(set(envelope.body) - set(model.model_fields))
    ]
    try:
        model.model_validate(envelope.body)
    except ValidationError as exc:
        problems.extend(
            f"{envelope.type}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
    return problems


def schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of each event's newest version, keyed by type: the compatibility snapshot."""
    result: dict[str, dict[str, Any]] = {}
    for name in event_types():
        model = model_for(name)
        result[name] = {"version": model.version, "schema": model.model_json_schema()}
    return result
