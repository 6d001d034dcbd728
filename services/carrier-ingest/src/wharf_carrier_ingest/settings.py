"""Settings of the carrier-ingest service."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from wharf_common.settings import ServiceSettings


class FtpServer(BaseModel):
    """One carrier's FTP server for documents; the password is never logged."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: SecretStr = SecretStr("")
    path_template: str = Field(
        default="/{tracking_number}.pdf",
        description="Remote path of one shipment's document",
    )
    max_connections: int = Field(default=4, ge=1, le=64)
    timeout: float = Field(default=30.0, gt=0)


class CarrierIngestSettings(ServiceSettings):
    """Carrier-ingest settings: service basics, zones, parse budget and FTP servers."""

    service_name: str = "carrier-ingest"
    http_port: int = 8083
    carrier_zones: dict[str, str] = Field(
        default_factory=dict,
        description="Carrier name to IANA zone for local times a payload cannot place",
    )
    parse_timeout: float = Field(default=10.0, gt=0, description="Budget of one adapter run")
    parse_threads: int = Field(
        default=1,
        ge=1,
        description="Adapter threads (a hung adapter is set aside, so one is enough)",
    )
    carrier_ftp: dict[str, FtpServer] = Field(
        default_factory=dict, description="Carrier name to the FTP server holding its documents"
    )
    documents_chunk_size: int = Field(default=100, ge=1, le=5000)
    documents_max_shipments: int = 5000
    documents_max_file_size: int = Field(
        default=25 * 1024 * 1024,
        ge=1,
        description="Bytes of one carrier document; a larger file is skipped as too_large",
    )
    documents_url_ttl: int = Field(default=7 * 24 * 3600, description="Signed URL lifetime")
    documents_job_timeout: float = Field(default=3600.0, description="Default job deadline")
    outbox_poll_interval: float = 1.0
    outbox_batch_size: int = Field(default=500, ge=1, description="Outbox rows per relay batch")
    attach_writers: int = Field(
        default=2, ge=1, description="Connections attaching parsed payloads in shared batches"
    )
    ingest_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Days an ingest's record, and so its status, is kept after receipt",
    )
