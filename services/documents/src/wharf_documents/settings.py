"""Settings of the documents service."""

from __future__ import annotations

from pydantic import Field, field_validator

from wharf_common.settings import ServiceSettings

_MIB = 1024 * 1024
_MIN_WORKER_MEMORY = 128 * _MIB


class DocumentsSettings(ServiceSettings):
    """The documents service's settings: the shared ones plus its render limits."""

    service_name: str = "documents"
    http_port: int = 8082

    render_workers: int | None = Field(
        default=None, ge=1, description="Worker processes; default one per CPU this process may use"
    )
    render_timeout: float = Field(default=60.0, gt=0, description="Hard budget of one render")
    render_max_tasks_per_worker: int = Field(
        default=200, ge=0, description="Renders before a worker is replaced (0: never)"
    )
    render_max_memory_bytes: int = Field(
        default=1024 * _MIB,
        ge=0,
        description="Memory one worker may use (its data segment); a render past it fails "
        "with too_large (0: no cap)",
    )
    render_max_template_bytes: int = 1 * _MIB
    render_max_assets_bytes: int = 50 * _MIB
    render_max_html_bytes: int = 20 * _MIB
    render_max_output_bytes: int = 50 * _MIB
    render_max_pages: int = 2_000

    job_deadline: float = Field(
        default=3600.0, gt=0, description="How long accepted work may wait and run, by default"
    )
    job_max_deadline: float = Field(default=7 * 24 * 3600.0, gt=0)
    reserved_workers: int = Field(
        default=0,
        ge=0,
        description="Workers batch items always leave free for single documents; with 0 a "
        "single document still goes first but may wait for one batch render to end",
    )
    batch_window: int | None = Field(
        default=None,
        ge=1,
        description="Items of one batch in flight per task consuming batch items; "
        "default 4x workers",
    )
    batch_max_items: int = Field(default=10_000, ge=1)
    max_upload_bytes: int = 25 * _MIB
    max_data_bytes: int = 1 * _MIB
    max_items_ref_bytes: int = Field(
        default=64 * _MIB, ge=1, description="Largest item list a batch may name by items_ref"
    )
    signed_url_seconds: int = Field(default=3600, ge=60)
    template_cache_size: int = Field(default=32, ge=0)

    fetch_max_resource_bytes: int = 10 * _MIB
    fetch_max_total_bytes: int = 50 * _MIB
    fetch_timeout: float = 10.0
    fetch_max_redirects: int = 5
    fetch_internal_allow_list: list[str] = Field(
        default_factory=list,
        description="host:port origins fetched even though they resolve to internal addresses; "
        "for test servers only, never from tenant input",
    )

    @field_validator("render_max_memory_bytes")
    @classmethod
    def _room_to_start(cls, value: int) -> int:
        # A worker holds about 50 MiB before its first render; a smaller cap
        # (often MiB meant as bytes) would fail every render.
        if 0 < value < _MIN_WORKER_MEMORY:
            raise ValueError(f"must be 0 (no cap) or at least {_MIN_WORKER_MEMORY} bytes")
        return value
