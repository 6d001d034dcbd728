"""Settings of the documents service."""

from __future__ import annotations

from pydantic import Field

from wharf_common.settings import ServiceSettings

_MIB = 1024 * 1024


class DocumentsSettings(ServiceSettings):
    """The documents service's settings: the shared ones plus its render limits."""

    service_name: str = "documents"

    render_workers: int | None = Field(
        default=None, ge=1, description="Worker processes; default one per CPU this process may use"
    )
    render_timeout: float = Field(default=60.0, gt=0, description="Hard budget of one render")
    render_max_tasks_per_worker: int = Field(
        default=200, ge=0, description="Renders before a worker is replaced (0: never)"
    )
    render_max_template_bytes: int = 1 * _MIB
    render_max_assets_bytes: int = 50 * _MIB
    render_max_html_bytes: int = 20 * _MIB
    render_max_output_bytes: int = 50 * _MIB
    render_max_pages: int = 2_000

    fetch_max_resource_bytes: int = 10 * _MIB
    fetch_max_total_bytes: int = 50 * _MIB
    fetch_timeout: float = 10.0
    fetch_max_redirects: int = 5
    fetch_internal_allow_list: list[str] = Field(
        default_factory=list,
        description="host:port origins fetched even though they resolve to internal addresses; "
        "for test servers only, never from tenant input",
    )
