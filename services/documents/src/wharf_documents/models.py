"""Bodies of the documents service's requests, as the gateway forwards them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
Ref = Field(default=None, min_length=1, max_length=1024, description="A ref from POST /v1/uploads")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewTemplate(_Body):
    """A template upload: HTML with optional CSS, or a zip archive (base64)."""

    name: str = Name
    html: str | None = None
    css: str | None = None
    archive: str | None = Field(default=None, description="base64 of a zip with index.html")


class NewDocument(_Body):
    """One document to render."""

    template: str = Name
    version: int | None = Field(default=None, ge=1)
    data: dict[str, Any] = Field(default_factory=dict)
    data_ref: str | None = Ref
    filename: str | None = Field(default=None, min_length=1, max_length=200)
    deadline_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> NewDocument:
        # The gateway forwards defaults too, so an empty data is as good as none.
        if self.data_ref is not None and self.data:
            raise ValueError("give data or data_ref, not both")
        return self


class BatchItem(_Body):
    """One item of a batch: its data and an optional file name in the bundle."""

    data: dict[str, Any] = Field(default_factory=dict)
    filename: str | None = Field(default=None, min_length=1, max_length=200)


class NewBatch(_Body):
    """Many documents from one template, bundled when all are done."""

    template: str = Name
    version: int | None = Field(default=None, ge=1)
    items: list[BatchItem] | None = Field(default=None, min_length=1)
    items_ref: str | None = Ref
    bundle: Literal["zip", "pdf"] = "zip"
    deadline_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> NewBatch:
        if (self.items is None) == (self.items_ref is None):
            raise ValueError("give exactly one of items and items_ref")
        return self


class BatchItemsQuery(_Body):
    """A page of a batch's items: an optional status, its size, and where it starts."""

    status: Literal["queued", "rendering", "done", "failed"] | None = None
    limit: int = Field(default=100, ge=1, le=500)
    cursor: int | None = Field(default=None, ge=0, description="The index to start after")
