"""What the service's handlers share: settings, connections, the renderer and names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wharf_common.runtime import Runtime
from wharf_documents.gate import RenderGate
from wharf_documents.render import Renderer
from wharf_documents.settings import DocumentsSettings
from wharf_documents.window import BatchWindow

if TYPE_CHECKING:
    import asyncpg

    from wharf_common.storage import ObjectStore
    from wharf_documents.templates import TemplateCache

SCHEMA = "documents"
RPC_QUEUE = "wharf.documents.rpc"
RENDER_QUEUE = "wharf.documents.render"
BATCH_QUEUE = "wharf.documents.render-batch"
BUNDLE_QUEUE = "wharf.documents.bundle"
# Batch items not yet on the bus; every scaler adds them to the queue depth
# (the view is in migrations/002_batch_backlog.sql).
BACKLOG_QUERY = f"SELECT items FROM {SCHEMA}.backlog"


@dataclass
class Context:
    """The running service as its handlers see it."""

    rt: Runtime
    settings: DocumentsSettings
    renderer: Renderer
    templates: TemplateCache = field(init=False)
    gate: RenderGate = field(init=False)
    window: BatchWindow = field(init=False)

    def __post_init__(self) -> None:
        from wharf_documents.templates import TemplateCache

        self.templates = TemplateCache(self, self.settings.template_cache_size)
        self.gate = RenderGate(self.workers, self.batch_concurrency)
        self.window = BatchWindow(self.settings.batch_window or 2 * self.handlers(self.workers))

    @property
    def db(self) -> asyncpg.Pool:
        """The database pool; there once the runtime has connected."""
        return self.rt.db

    @property
    def store(self) -> ObjectStore:
        """Object storage; there once the runtime has connected."""
        return self.rt.store

    @property
    def workers(self) -> int:
        """Render workers in this task."""
        return self.renderer.pool.workers

    @property
    def batch_concurrency(self) -> int:
        """Batch items rendered at once: the workers less those kept for single documents."""
        return max(1, self.workers - self.settings.reserved_workers)

    @staticmethod
    def handlers(slots: int) -> int:
        """Messages a consumer handles at once to keep `slots` render workers busy.

        A handler also works before its render (the job's row) and after it
        (storing the PDF, recording the outcome, acknowledging). With a second
        handler per slot waiting at the gate, a worker starts its next render
        as soon as it is free, while the first handler finishes that work; the
        gate still starts no more renders than there are slots.
        """
        return 2 * slots
