"""Request and answer bodies of the public API; they also generate the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from wharf_common.storage import CONTENT_TYPE_PATTERN

Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
# What an API key may be allowed to do; every scope a route asks for is one of these.
Scope = Literal[
    "carrier:ingest",
    "carrier-documents:read",
    "carrier-documents:write",
    "documents:read",
    "documents:write",
    "shipments:read",
    "shipments:write",
    "templates:read",
    "templates:write",
    "tracking:read",
    "uploads:write",
    "webhooks:read",
    "webhooks:write",
]


class _Body(BaseModel):
    # Strict: a number is a JSON number, never true or "2". Fields parsed from
    # strings (a time) opt out with Field(strict=False).
    model_config = ConfigDict(extra="forbid", strict=True)


def _storable(value: datetime) -> datetime:
    # PostgreSQL, like Python, holds years 1 to 9999 only; an offset can push
    # 0001-01-01 or 9999-12-31 past either end once the time is in UTC.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie between years 1 and 9999 in UTC") from None
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_storable)]


class CreateTenant(_Body):
    """A new tenant and its first admin user."""

    name: str = Field(min_length=1, max_length=200)
    admin_email: Email
    admin_password: str = Field(min_length=12, max_length=1024)


class TenantCreated(BaseModel):
    """The tenant and admin user just created."""

    tenant_id: uuid.UUID
    admin_user_id: uuid.UUID


class TokenRequest(_Body):
    """Email and password."""

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(_Body):
    """A refresh token."""

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    """A short-lived access token and the refresh token that renews it."""

    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class Revoked(BaseModel):
    """Confirms a revocation."""

    revoked: bool


class CreateUser(_Body):
    """A user of the caller's tenant; the ops role cannot be granted here."""

    email: Email
    password: str = Field(min_length=12, max_length=1024)
    roles: list[Literal["admin", "member"]] = Field(default=["member"], min_length=1, max_length=2)


class User(BaseModel):
    """A user."""

    id: uuid.UUID
    email: str
    roles: list[str]


class CreateApiKey(_Body):
    """A machine credential with scopes such as ``shipments:read``."""

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=50)


class ApiKeyCreated(BaseModel):
    """A new API key; `key` is shown this once and never again."""

    id: uuid.UUID
    name: str
    scopes: list[str]
    key: str


class Jwks(BaseModel):
    """The public keys that verify access tokens."""

    keys: list[dict[str, str]]


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


UploadRef = Annotated[
    str, Field(min_length=1, max_length=1024, description="A ref from POST /v1/uploads")
]


class CreateUpload(_Body):
    """An object about to be uploaded: its content type and size in bytes."""

    content_type: str = Field(
        default="application/json",
        min_length=1,
        max_length=200,
        pattern=CONTENT_TYPE_PATTERN,
        description="The Content-Type the upload must be sent with",
    )
    size: int = Field(
        ge=1, description="The upload's exact size; at most the gateway's upload size limit"
    )


class UploadCreated(BaseModel):
    """Where to upload an object, until when, and the ref that names it afterwards."""

    ref: str
    url: str = Field(description="Takes one PUT of the declared size and type")
    method: Literal["PUT"]
    headers: dict[str, str] = Field(description="Headers the PUT must send")
    expires_at: AwareDatetime


TemplateName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


def _form_fields(schema: dict[str, Any]) -> None:
    # A form field is sent or left out: it has no null value, nor a default.
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class TemplateUpload(_Body):
    """A template version, uploaded as multipart/form-data: HTML with optional CSS, or a zip."""

    model_config = ConfigDict(json_schema_extra=_form_fields)

    name: TemplateName
    html: str | SkipJsonSchema[None] = Field(
        default=None, description="The template: HTML with Jinja fields; excludes archive"
    )
    css: str | SkipJsonSchema[None] = Field(default=None, description="A stylesheet for the html")
    archive: bytes | SkipJsonSchema[None] = Field(
        default=None,
        description="A zip whose index.html is the template, with its assets beside it;"
        " excludes html and css",
        json_schema_extra={"contentMediaType": "application/zip"},
    )


class RenderDocument(_Body):
    """One PDF from a template and its data."""

    template: TemplateName
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)
    data: dict[str, Any] = Field(default_factory=dict)
    data_ref: UploadRef | None = Field(
        default=None, description="An uploaded JSON object to use as data; excludes data"
    )
    filename: str | None = Field(default=None, min_length=1, max_length=200)
    deadline_seconds: float | None = Field(
        default=None, gt=0, le=86_400, description="How long the job may wait and run"
    )

    @model_validator(mode="after")
    def _one_source(self) -> RenderDocument:
        if self.data_ref is not None and "data" in self.model_fields_set:
            raise ValueError("give data or data_ref, not both")
        return self


class BatchItem(_Body):
    """One document of a batch: its data and an optional file name in the bundle."""

    data: dict[str, Any] = Field(default_factory=dict)
    filename: str | None = Field(default=None, min_length=1, max_length=200)


class RenderBatch(_Body):
    """Many PDFs from one template, bundled as a zip or one merged PDF when all are done."""

    template: TemplateName
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)
    items: list[BatchItem] | None = Field(default=None, min_length=1, max_length=10_000)
    items_ref: UploadRef | None = Field(
        default=None, description="An uploaded JSON array of items; excludes items"
    )
    bundle: Literal["zip", "pdf"] = "zip"
    deadline_seconds: float | None = Field(default=None, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_source(self) -> RenderBatch:
        if (self.items is None) == (self.items_ref is None):
            raise ValueError("give exactly one of items and items_ref")
        return self


class DocumentBatch(BaseModel):
    """A batch's progress, why items failed, and a signed URL of its bundle once done."""

    id: uuid.UUID
    status: Literal["rendering", "bundling", "done", "failed"]
    total: int
    done: int
    failed: int
    failures: dict[str, int] = Field(
        description="Failed items by reason code, such as deadline_exceeded or template_error;"
        " GET /v1/document-batches/{id}/items?status=failed names each"
    )
    bundle_format: Literal["zip", "pdf"]
    bundle_bytes: int | None = None
    reason: str | None = Field(
        default=None,
        description="Why the batch failed; or, for a batch done with failed items, the reason"
        " code that failed the most of them",
    )
    deadline: AwareDatetime
    created_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    url: str | None = Field(default=None, description="The bundle; only successes are in it")
    url_expires_at: AwareDatetime | None = None


class BatchItemStatus(BaseModel):
    """One item of a batch: where it is in the batch, how it went, and its document."""

    index: int = Field(description="The item's position in the batch's items, from 0")
    filename: str | None = None
    status: Literal["queued", "rendering", "done", "failed"]
    reason: str | None = Field(default=None, description="A failed item's reason code")
    detail: str | None = None
    document_id: uuid.UUID
    document: str = Field(description="The item's document, at GET /v1/documents/{id}")


class BatchItemPage(BaseModel):
    """A page of a batch's items in order."""

    items: list[BatchItemStatus]
    next_cursor: str | None = None


class CreateWebhook(_Body):
    """An HTTPS endpoint of the tenant's and the event types it wants."""

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=100)


class ReplayWebhook(_Body):
    """Send again the endpoint's events that occurred since a time."""

    since: Timestamp = Field(strict=False)


class WebhookReplayed(BaseModel):
    """What a replay scheduled; events already pending to the endpoint are not sent twice."""

    id: uuid.UUID
    scheduled: int = Field(description="New deliveries, at most the service's replay limit")
    already_pending: int = Field(
        description="Events skipped because a delivery of them to this endpoint is pending"
    )


class WebhookAttempt(BaseModel):
    """One attempt to deliver an event: its own outcome, and its delivery's status now."""

    delivery_id: int = Field(description="Sent as Wharf-Delivery-Id; the same on every retry")
    event_id: uuid.UUID = Field(description="Sent as Wharf-Event-Id")
    event_type: str
    replay: bool
    attempt: int = Field(description="1 for the delivery's first attempt")
    attempted_at: AwareDatetime
    attempt_outcome: Literal["succeeded", "failed"] = Field(
        description="This attempt's own result: succeeded on a 2xx answer"
    )
    status_code: int | None = Field(description="The HTTP status this attempt got, if any")
    error: str | None = Field(description="Why this attempt failed")
    duration_ms: float
    current_delivery_status: Literal["pending", "delivered", "failed", "cancelled"] = Field(
        description="The delivery's status now, after all its attempts so far; the same on"
        " every attempt of one delivery"
    )


class WebhookDeliveries(BaseModel):
    """A page of an endpoint's delivery attempts, newest first."""

    items: list[WebhookAttempt]
    pending: int = Field(description="Deliveries to the endpoint not yet delivered or failed")
    next_cursor: str | None


TrackingNumber = Annotated[str, Field(min_length=1, max_length=100)]
CarrierName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]

# The payload formats carrier-ingest translates; a test keeps this list equal to its adapters.
CarrierFormat = Literal[
    "aftership",
    "aramex",
    "australiapost",
    "bpost",
    "canadapost",
    "dhl_express",
    "dhl_unified",
    "dpd",
    "easypost",
    "edifact_iftsta",
    "fedex",
    "geodis",
    "gls",
    "haypost",
    "hermes",
    "landmark",
    "laposte",
    "nationex",
    "royalmail",
    "royalmail_csv",
    "sendle",
    "shippo",
    "smartkargo",
    "tnt",
    "ups",
    "usps",
    "x12_214",
]


class IngestLinks(BaseModel):
    """Where to follow an ingest up."""

    ingest: str = Field(description="The ingest's status")
    tracking_events: list[str] = Field(
        default_factory=list,
        description="The tracking events of each tracking number the payload's events named;"
        " empty until it is ingested",
    )


class IngestAccepted(BaseModel):
    """A carrier payload stored and queued for translation; `links.ingest` follows it up."""

    ingest_id: uuid.UUID
    status: Literal["accepted"]
    links: IngestLinks


class IngestCounts(BaseModel):
    """What a translated payload brought."""

    events: int = Field(description="Events in the payload")
    new_events: int = Field(description="Events not stored before")
    duplicates: int = Field(description="Events already stored from an earlier payload")
    status_changes: int = Field(description="Shipments whose current status moved")


class IngestFailure(BaseModel):
    """Why a payload could not be translated; it waits in the dead-letter queue."""

    adapter: str = Field(description="The carrier format whose adapter was asked to read it")
    reason: str


class NotFoundReply(BaseModel):
    """A tracking number the carrier says it does not know."""

    tracking_number: str | None
    code: str | None = None
    message: str = ""


class CarrierErrorReply(BaseModel):
    """An error reply from the carrier."""

    code: str | None
    message: str
    tracking_number: str | None = None


class IngestStatus(BaseModel):
    """What became of one posted carrier payload.

    `pending` until carrier-ingest has handled it; then `ingested` (see
    `outcome` and `counts`) or `failed` (see `failure`).
    """

    ingest_id: uuid.UUID
    carrier: str
    status: Literal["pending", "ingested", "failed"]
    outcome: (
        Literal["events", "duplicate", "not_found", "carrier_error", "empty", "dead_lettered"]
        | None
    ) = Field(
        default=None,
        description="events: new events stored; duplicate: all known already; not_found or"
        " carrier_error: the carrier answered so; empty: nothing in it; dead_lettered: failed",
    )
    received_at: AwareDatetime
    processed_at: AwareDatetime | None = None
    counts: IngestCounts | None = None
    failure: IngestFailure | None = None
    not_found: list[NotFoundReply] = Field(default_factory=list)
    carrier_errors: list[CarrierErrorReply] = Field(default_factory=list)
    links: IngestLinks


class CreateShipment(_Body):
    """A shipment to follow; events already received for it are attached at once."""

    carrier: CarrierName
    tracking_number: TrackingNumber
    reference: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TrackingEvent(BaseModel):
    """One canonical tracking event."""

    event_id: str
    carrier: str
    tracking_number: str
    occurred_at: str
    status: str
    classified_by: str
    location: dict[str, Any] | None = None
    code: str | None = None
    description: str = ""
    incident_reason: str | None = None
    operator: str | None = None


class Shipment(BaseModel):
    """A shipment and its current status."""

    id: uuid.UUID
    carrier: str
    tracking_number: str
    reference: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: str
    status_at: str | None = None
    created_at: str
    events: list[TrackingEvent] | None = None


class ShipmentPage(BaseModel):
    """A page of shipments, newest first."""

    items: list[Shipment]
    next_cursor: str | None = None


class TrackingEvents(BaseModel):
    """The canonical events of one tracking number."""

    carrier: str
    tracking_number: str
    events: list[TrackingEvent]


class CreateCarrierDocuments(_Body):
    """Fetch a carrier's documents for up to 5,000 shipments."""

    carrier: CarrierName
    tracking_numbers: list[TrackingNumber] = Field(min_length=1, max_length=5000)
    deadline_seconds: float | None = Field(default=None, gt=0, le=86400)


class CarrierDocumentsJob(BaseModel):
    """A carrier-documents job: progress, and a signed manifest URL once finished."""

    id: uuid.UUID
    carrier: str
    status: Literal["running", "completed", "failed"]
    reason: str | None = Field(
        default=None, description="Why a failed job failed: carrier_unreachable"
    )
    total: int
    done: int
    missing: int
    pending: int
    created_at: str
    finished_at: str | None = None
    manifest_url: str | None = Field(
        default=None, description="Signed afresh on each read, for WHARF_DOCUMENTS_URL_TTL"
    )
    last_error: str | None = Field(
        default=None, description="The job's last failure to reach the carrier's FTP server"
    )
