"""Wharf's documents service: templates rendered to PDF in a bounded pool of workers."""

from wharf_documents.errors import (
    FetchFailed,
    FetchRefused,
    RenderDeadlineExceeded,
    RendererClosed,
    RenderError,
    TemplateError,
    TooLarge,
    WorkerCrashed,
)
from wharf_documents.render import Renderer, RenderRequest, RenderResult

__version__ = "0.1.0"

__all__ = [
    "FetchFailed",
    "FetchRefused",
    "RenderDeadlineExceeded",
    "RenderError",
    "RenderRequest",
    "RenderResult",
    "Renderer",
    "RendererClosed",
    "TemplateError",
    "TooLarge",
    "WorkerCrashed",
    "__version__",
]
