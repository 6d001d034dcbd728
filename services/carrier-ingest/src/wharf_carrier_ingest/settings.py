"""Settings of the carrier-ingest service."""

from __future__ import annotations

from pydantic import Field

from wharf_common.settings import ServiceSettings


class CarrierIngestSettings(ServiceSettings):
    """Carrier-ingest settings: service basics plus per-carrier zone overrides."""

    service_name: str = "carrier-ingest"
    carrier_zones: dict[str, str] = Field(
        default_factory=dict,
        description="Carrier name to IANA zone for local times a payload cannot place",
    )
