"""Why a render failed, as exceptions carrying a machine-readable reason."""

from __future__ import annotations

from wharf_common.errors import DeadlineExceeded, WharfError


class RenderError(WharfError):
    """A render that did not produce a PDF; `reason` says why in one word.

    Every subclass takes a single message argument, so instances survive the
    pickling that carries them back from a worker process.
    """

    reason = "render_failed"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemplateError(RenderError):
    """The template cannot be rendered: bad syntax, a missing value or a forbidden operation."""

    reason = "template_error"


class RenderDeadlineExceeded(RenderError, DeadlineExceeded):
    """The render ran past its budget or its job's deadline; its worker was killed."""

    reason = "deadline_exceeded"


class WorkerCrashed(RenderError):
    """The worker process died during the render; a new worker has replaced it."""

    reason = "worker_crashed"
    retryable = True


class TooLarge(RenderError):
    """An input, a fetched resource or the output passed its size cap."""

    reason = "too_large"


class FetchRefused(RenderError):
    """The document asked for a resource it may not fetch (a file, a host, an address)."""

    reason = "fetch_refused"


class FetchFailed(RenderError):
    """A resource the document may fetch could not be had (a missing asset, an HTTP error)."""

    reason = "fetch_failed"


class RendererClosed(RenderError):
    """The renderer was shut down before the render could start."""

    reason = "shutting_down"
    retryable = True
