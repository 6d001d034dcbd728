"""The public API's route table: every /v1 route, who may call it, and what answers it.

A route whose service is not built yet has no handler and answers 503; giving
it one is the only change needed when that service arrives.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from wharf_common.events import ShipmentStatus
from wharf_gateway import models

if TYPE_CHECKING:
    from wharf_gateway.edge import Call

Access = Literal["public", "admin", "tenant", "carrier", "ops"]
Handler = Callable[["Call"], Awaitable[web.StreamResponse]]


class IdPath(BaseModel):
    """A route whose path names one object by id."""

    id: uuid.UUID


class CarrierPath(BaseModel):
    """A route whose path names a carrier payload format."""

    carrier: models.CarrierFormat


class IngestPath(BaseModel):
    """A route whose path names one payload a carrier posted."""

    carrier: models.CarrierFormat
    ingest_id: uuid.UUID


class CarrierEventsQuery(BaseModel):
    """The tracking number, for carrier formats whose replies do not name it."""

    tracking_number: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The parcel the payload is about, for formats whose payloads may not name"
        " it (dpd, sendle)",
    )


class ShipmentQuery(BaseModel):
    """A page of shipments: its size, where it starts, and a status filter."""

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=200)
    status: ShipmentStatus | None = None


class BatchItemsQuery(BaseModel):
    """A page of a batch's items in order, optionally only those with one status."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["queued", "rendering", "done", "failed"] | None = None
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,9}$",
        description="The next_cursor of the previous page",
    )


class ServicePath(BaseModel):
    """A route whose path names a service."""

    name: str


class TrackingQuery(BaseModel):
    """Which carrier's tracking number to list events for."""

    carrier: models.CarrierName
    tracking_number: str = Field(min_length=1, max_length=100)


class LogQuery(BaseModel):
    """Filters of a log search: every filter given must match, newest first."""

    model_config = ConfigDict(extra="forbid")

    service: str | None = Field(default=None, min_length=1, max_length=100)
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = Field(
        default=None, description="The minimum level"
    )
    tenant: str | None = Field(default=None, min_length=1, max_length=200)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=200)
    since: models.Timestamp | None = Field(default=None, description="Inclusive")
    until: models.Timestamp | None = Field(default=None, description="Exclusive; after since")
    text: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200)

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        # On the field, not the model, so the 422 names the parameter.
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError("until must be after since")
        return until


class DeliveriesQuery(BaseModel):
    """A page of a webhook endpoint's delivery attempts, newest first."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The next_cursor of the previous page",
    )


class SetTaskCount(models._Body):
    """The task count to run for a service."""

    count: int = Field(ge=0, le=1000)


@dataclass(frozen=True)
class Route:
    """One public operation."""

    method: str
    path: str
    summary: str
    access: Access
    service: str
    scope: str | None = None
    # Other scopes that grant an API key the route too, for a read that two
    # kinds of caller need.
    also_scopes: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    # The fields of a multipart/form-data body, for the OpenAPI document.
    form: type[BaseModel] | None = None
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    content_type: str = "application/json"
    # Whether the route honours an Idempotency-Key header.
    idempotent: bool = False
    handler: Handler | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def scopes(self) -> tuple[str, ...]:
        """Every scope that grants an API key this route."""
        return (self.scope, *self.also_scopes) if self.scope is not None else ()

    @property
    def operation_id(self) -> str:
        """A stable name for the operation in the OpenAPI document."""
        words = [w for w in self.path.replace("{", "").replace("}", "").split("/") if w]
        cleaned = "_".join(w.replace("-", "_").replace(".", "") for w in words if w != "v1")
        return f"{self.method.lower()}_{cleaned}"


def table(handlers: dict[str, Handler]) -> list[Route]:
    """Every public route; `handlers` maps operation ids to the handlers built so far."""
    routes = [
        Route("POST", "/v1/tenants", "Create a tenant and its first admin user", "public", "auth",
              body=models.CreateTenant, response=models.TenantCreated, status=201),
        Route("POST", "/v1/auth/token", "Exchange email and password for tokens", "public",
              "auth", body=models.TokenRequest, response=models.TokenPair),
        Route("POST", "/v1/auth/refresh", "Rotate a refresh token", "public", "auth",
              body=models.RefreshRequest, response=models.TokenPair),
        Route("POST", "/v1/auth/logout", "Revoke a refresh token", "public", "auth",
              body=models.RefreshRequest, response=models.Revoked),
        Route("GET", "/.well-known/jwks.json", "Public signing keys", "public", "auth",
              response=models.Jwks),
        Route("POST", "/v1/users", "Add a user with roles", "admin", "auth",
              body=models.CreateUser, response=models.User, status=201),
        Route("POST", "/v1/api-keys", "Create an API key; the key is shown once", "admin",
              "auth", body=models.CreateApiKey, response=models.ApiKeyCreated, status=201),
        Route("DELETE", "/v1/api-keys/{id}", "Revoke an API key", "admin", "auth",
              path_params=IdPath, response=models.Revoked),
        Route("POST", "/v1/shipments", "Create a shipment", "tenant", "carrier-ingest",
              scope="shipments:write", body=models.CreateShipment, response=models.Shipment,
              status=201),
        Route("GET", "/v1/shipments", "List shipments", "tenant", "carrier-ingest",
              scope="shipments:read", query=ShipmentQuery, response=models.ShipmentPage),
        Route("GET", "/v1/shipments/{id}", "A shipment, its status and history", "tenant",
              "carrier-ingest", scope="shipments:read", path_params=IdPath,
              response=models.Shipment),
        Route("POST", "/v1/templates", "Upload a template version", "tenant", "documents",
              scope="templates:write", content_type="multipart/form-data",
              form=models.TemplateUpload, status=201),
        Route("GET", "/v1/templates", "List templates", "tenant", "documents",
              scope="templates:read"),
        Route("POST", "/v1/documents", "Render one PDF", "tenant", "documents",
              scope="documents:write", body=models.RenderDocument, idempotent=True, status=202),
        Route("GET", "/v1/documents/{id}", "A render job", "tenant", "documents",
              scope="documents:read", path_params=IdPath),
        Route("POST", "/v1/document-batches", "Render many PDFs", "tenant", "documents",
              scope="documents:write", body=models.RenderBatch, idempotent=True,
              response=models.DocumentBatch, status=202),
        Route("GET", "/v1/document-batches/{id}", "A batch's progress and bundle", "tenant",
              "documents", scope="documents:read", path_params=IdPath,
              response=models.DocumentBatch),
        Route("GET", "/v1/document-batches/{id}/items",
              "A batch's items: status, failure reason, and the document of each", "tenant",
              "documents", scope="documents:read", path_params=IdPath, query=BatchItemsQuery,
              response=models.BatchItemPage),
        Route("POST", "/v1/carriers/{carrier}/events", "A raw carrier payload", "carrier",
              "carrier-ingest", scope="carrier:ingest", path_params=CarrierPath,
              query=CarrierEventsQuery, content_type="application/octet-stream",
              response=models.IngestAccepted, status=202),
        Route("GET", "/v1/carriers/{carrier}/events/{ingest_id}",
              "A posted payload's status: pending, ingested with counts, or failed and why",
              "tenant", "carrier-ingest", scope="carrier:ingest", also_scopes=("tracking:read",),
              path_params=IngestPath, response=models.IngestStatus),
        Route("GET", "/v1/tracking-events", "Canonical tracking events", "tenant",
              "carrier-ingest", scope="tracking:read", query=TrackingQuery,
              response=models.TrackingEvents),
        Route("POST", "/v1/carrier-documents", "Fetch carrier documents for shipments",
              "tenant", "carrier-ingest", scope="carrier-documents:write",
              body=models.CreateCarrierDocuments, response=models.CarrierDocumentsJob,
              status=202),
        Route("GET", "/v1/carrier-documents/{id}", "A carrier-documents job and manifest",
              "tenant", "carrier-ingest", scope="carrier-documents:read", path_params=IdPath,
              response=models.CarrierDocumentsJob),
        Route("GET", "/v1/logs", "Search logs", "ops", "log-sink", query=LogQuery),
        Route("GET", "/v1/ops/services", "Task counts and queue depths", "ops", "ops"),
        Route("PUT", "/v1/ops/services/{name}/tasks", "Set a service's task count", "ops", "ops",
              path_params=ServicePath, body=SetTaskCount),
        Route("POST", "/v1/webhooks", "Register a webhook endpoint", "tenant", "webhooks",
              scope="webhooks:write", body=models.CreateWebhook, status=201),
        Route("GET", "/v1/webhooks", "List webhook endpoints", "tenant", "webhooks",
              scope="webhooks:read"),
        Route("DELETE", "/v1/webhooks/{id}", "Remove a webhook endpoint", "tenant", "webhooks",
              scope="webhooks:write", path_params=IdPath),
        Route("GET", "/v1/webhooks/{id}/deliveries", "A webhook's delivery history", "tenant",
              "webhooks", scope="webhooks:read", path_params=IdPath, query=DeliveriesQuery,
              response=models.WebhookDeliveries),
        Route("POST", "/v1/webhooks/{id}/replay", "Replay a webhook's deliveries", "tenant",
              "webhooks", scope="webhooks:write", path_params=IdPath, body=models.ReplayWebhook,
              response=models.WebhookReplayed, status=202),
        Route("POST", "/v1/uploads", "A signed upload URL and its reference", "tenant",
              "gateway", scope="uploads:write", body=models.CreateUpload,
              response=models.UploadCreated, status=201),
    ]  # fmt: skip
    return [_bind(route, handlers) for route in routes]


def _bind(route: Route, handlers: dict[str, Handler]) -> Route:
    handler = handlers.get(route.operation_id)
    if handler is None:
        return route
    return dataclasses.replace(route, handler=handler)
