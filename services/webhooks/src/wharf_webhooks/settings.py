"""The webhooks service's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from wharf_common.settings import SealingSettings


class WebhookSettings(SealingSettings):
    """Delivery limits, retry bounds and the hosts exempt from the address checks."""

    service_name: str = "webhooks"
    http_port: int = 8085

    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts (comma-separated) delivered to whatever they resolve to, over HTTP"
        " too; for tests and trusted internal receivers only",
    )
    webhook_timeout: float = Field(default=10.0, description="Seconds one delivery may take")
    webhook_endpoint_concurrency: int = Field(
        default=4, description="Deliveries in flight to one endpoint, per task"
    )
    webhook_workers: int = Field(default=64, description="Deliveries in flight per task")
    webhook_retry_base: float = 5.0
    webhook_retry_max: float = 3600.0
    webhook_retry_for: float = Field(
        default=24 * 3600.0, description="Seconds after which a delivery that keeps failing fails"
    )
    webhook_poll_interval: float = 1.0
    webhook_replay_limit: int = 10_000

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value
