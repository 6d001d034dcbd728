"""Templates and data to PDF: one render in a worker process, and the async Renderer around it."""

from __future__ import annotations

import gc
import logging
import pickle
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import weasyprint
from weasyprint.urls import FatalURLFetchingError

from wharf_common import deadlines
from wharf_documents.errors import (
    FetchFailed,
    RenderDeadlineExceeded,
    RenderError,
    TooLarge,
)
from wharf_documents.fetcher import ASSET_BASE_URL, FetchPolicy, SafeURLFetcher
from wharf_documents.pool import WorkerPool
from wharf_documents.settings import DocumentsSettings
from wharf_documents.templating import render_template

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """One document to render: a Jinja2 HTML template, its data, stylesheet and assets.

    `assets` maps paths relative to the template (``fonts/a.ttf``) to their
    bytes; the template refers to them by those relative paths.
    `allowed_hosts` names the external hosts it may fetch from (none by default).
    """

    template: str
    data: Mapping[str, Any] = field(default_factory=dict)
    css: str | None = None
    assets: Mapping[str, bytes] = field(default_factory=dict)
    allowed_hosts: frozenset[str] = frozenset()
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class RenderResult:
    """A rendered PDF and its page count."""

    pdf: bytes
    pages: int


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """Caps that apply inside the worker."""

    max_html_bytes: int = 20 * 1024 * 1024
    max_output_bytes: int = 50 * 1024 * 1024
    max_pages: int = 2_000


@dataclass(frozen=True, slots=True)
class _Job:
    template: str
    data: dict[str, Any]
    css: str | None
    assets: dict[str, bytes]
    policy: FetchPolicy
    limits: RenderLimits


def render_pdf(
    template: str,
    data: Mapping[str, Any],
    *,
    css: str | None = None,
    assets: Mapping[str, bytes] | None = None,
    policy: FetchPolicy | None = None,
    limits: RenderLimits | None = None,
) -> RenderResult:
    """Render synchronously in this process; the Renderer runs this in its workers."""
    limits = limits or RenderLimits()
    html = render_template(template, data)
    if len(html.encode()) > limits.max_html_bytes:
        raise TooLarge(f"the rendered HTML is larger than {limits.max_html_bytes} bytes")

    fetcher = SafeURLFetcher(assets or {}, policy)
    try:
        stylesheets = []
        if css:
            stylesheets.append(
                weasyprint.CSS(string=css, base_url=ASSET_BASE_URL, url_fetcher=fetcher)
            )
        document = weasyprint.HTML(
            string=html, base_url=ASSET_BASE_URL, url_fetcher=fetcher
        ).render(stylesheets=stylesheets)
        pages = len(document.pages)
        if pages > limits.max_pages:
            raise TooLarge(f"the document has {pages} pages, more than {limits.max_pages}")
        pdf = document.write_pdf()
    except FatalURLFetchingError as exc:
        if isinstance(exc.__cause__, RenderError):
            raise exc.__cause__ from None
        raise FetchFailed(str(exc)) from None
    if fetcher.failure is not None:
        raise fetcher.failure

    if len(pdf) > limits.max_output_bytes:
        raise TooLarge(f"the PDF is larger than {limits.max_output_bytes} bytes")
    return RenderResult(pdf=pdf, pages=pages)


def _render_job(job: _Job) -> RenderResult:
    try:
        return render_pdf(
            job.template,
            job.data,
            css=job.css,
            assets=job.assets,
            policy=job.policy,
            limits=job.limits,
        )
    except RenderError:
        raise
    except MemoryError:
        pass
    except Exception as exc:
        # Anything else must still cross the process boundary as a picklable error.
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
    # Out of memory. Raising outside the handler lets the MemoryError's
    # traceback, and the half-built document its frames hold, be freed first.
    gc.collect()
    limit, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if limit == resource.RLIM_INFINITY:
        raise TooLarge("the render ran out of memory")
    raise TooLarge(f"the render needed more than the {limit // _MIB} MiB a worker may use")


class Renderer:
    """Render documents in a bounded pool of worker processes, from asyncio.

    Usable as an async context manager; close() stops the workers.
    """

    def __init__(
        self, settings: DocumentsSettings | None = None, *, pool: WorkerPool | None = None
    ) -> None:
        self.settings = settings or DocumentsSettings()
        self.pool = pool or WorkerPool(
            self.settings.render_workers,
            max_tasks_per_worker=self.settings.render_max_tasks_per_worker,
            max_memory_bytes=self.settings.render_max_memory_bytes,
            preload=[__name__],
        )
        self._limits = RenderLimits(
            max_html_bytes=self.settings.render_max_html_bytes,
            max_output_bytes=self.settings.render_max_output_bytes,
            max_pages=self.settings.render_max_pages,
        )

    async def __aenter__(self) -> Renderer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def render(self, request: RenderRequest) -> RenderResult:
        """Render `request` to a PDF; raises a RenderError whose `reason` says why not."""
        started = time.perf_counter()
        try:
            job = self._job(request)
            result = await self._run(job, request.deadline)
        except RenderError as exc:
            logger.info(
                "render failed in %.0f ms: %s",
                (time.perf_counter() - started) * 1000,
                exc.reason,
                extra={"reason": exc.reason},
            )
            raise
        logger.info(
            "rendered %d pages, %d bytes in %.0f ms",
            result.pages,
            len(result.pdf),
            (time.perf_counter() - started) * 1000,
        )
        return result

    async def _run(self, job: _Job, deadline: datetime | None) -> RenderResult:
        if deadlines.expired(deadline):
            raise RenderDeadlineExceeded("the job's deadline passed before the render started")
        timeout = self.settings.render_timeout
        left = deadlines.remaining(deadline)
        if left is not None:
            timeout = min(timeout, left)
        try:
            return await self.pool.run(_render_job, job, budget=timeout)
        except RenderError:
            raise
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            # The worker wraps its own failures, so these come from sending the job.
            raise RenderError(f"the job cannot be sent to a worker: {exc}") from None

    def _job(self, request: RenderRequest) -> _Job:
        settings = self.settings
        template_bytes = len(request.template.encode()) + len((request.css or "").encode())
        if template_bytes > settings.render_max_template_bytes:
            raise TooLarge(
                f"the template is larger than {settings.render_max_template_bytes} bytes"
            )
        assets_bytes = sum(len(content) for content in request.assets.values())
        if assets_bytes > settings.render_max_assets_bytes:
            raise TooLarge(f"the assets are larger than {settings.render_max_assets_bytes} bytes")
        policy = FetchPolicy(
            allowed_hosts=frozenset(host.lower().rstrip(".") for host in request.allowed_hosts),
            internal_allow_list=frozenset(settings.fetch_internal_allow_list),
            max_resource_bytes=settings.fetch_max_resource_bytes,
            max_total_bytes=settings.fetch_max_total_bytes,
            max_redirects=settings.fetch_max_redirects,
            timeout=settings.fetch_timeout,
        )
        return _Job(
            template=request.template,
            data=dict(request.data),
            css=request.css,
            assets=dict(request.assets),
            policy=policy,
            limits=self._limits,
        )

    async def close(self) -> None:
        """Let running renders finish, then stop the workers."""
        await self.pool.close(grace=self.settings.render_timeout)
