"""Settings read from the environment, one pydantic model per service.

Every variable is prefixed with ``WHARF_`` (``WHARF_AMQP_URL``...). Connection
settings are URLs. Models are built once, in a service's ``__main__``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The default key encryption key: fine on a laptop, never in production.
DEVELOPMENT_KEY_ENCRYPTION_KEY = "wharf-local-key-encryption-key-change-me"


class ServiceSettings(BaseSettings):
    """What every service needs: its connections, its HTTP port and its limits."""

    model_config = SettingsConfigDict(env_prefix="WHARF_", extra="ignore")

    service_name: str = "service"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    management_url: str = "http://guest:guest@127.0.0.1:15672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/wharf"
    storage_url: str = "file://.wharf/objects"
    storage_signing_key: SecretStr = SecretStr("wharf-local-signing-key-change-me")
    public_url: str = "http://127.0.0.1:8080"

    http_host: str = "0.0.0.0"
    http_port: int = 8080
    http_reuse_port: bool = Field(
        default=False,
        description="Share the HTTP port with other tasks of the same service (SO_REUSEPORT)",
    )
    ops_port: int | None = Field(
        default=None, description="Extra port serving only /healthz, /readyz and /metrics"
    )

    log_level: str = "INFO"
    log_to_bus: bool = True
    log_buffer_size: int = 10_000

    stop_timeout: float = 30.0
    claim_check_threshold: int = 256 * 1024
    claim_check_retention_days: int = Field(default=14, ge=1)
    prefetch: int = 32
    concurrency: int = 16
    max_attempts: int = 5
    retry_base_delay: float = 0.5
    retry_max_delay: float = 30.0
    db_pool_max: int = 10
    handled_retention_days: float = Field(default=7.0, gt=0)
    gc_threshold: int = Field(
        default=50_000,
        ge=1,
        description="Allocations between collections of the youngest garbage-collector generation",
    )

    queue_metrics: bool = Field(
        default=False, description="Publish the service's queue depth to CloudWatch (ECS)"
    )
    queue_metrics_interval: float = Field(default=60.0, gt=0)
    queue_metrics_endpoint_url: str | None = None

    def public_dump(self) -> dict[str, Any]:
        """Settings as they may be logged: secrets and URL passwords masked."""
        data: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                data[name] = "***"
            elif isinstance(value, str) and "://" in value:
                data[name] = redact_url(value)
            else:
                data[name] = value
        return data


class SealingSettings(ServiceSettings):
    """Settings of a service that keeps secrets encrypted at rest, under rotatable keys."""

    key_encryption_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_KEY_ENCRYPTION_KEY),
        description="Seals secrets at rest (auth's signing keys, webhook endpoint secrets)",
    )
    previous_key_encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Earlier key encryption keys (comma-separated), still opening what was"
        " sealed before a rotation until every task has sealed it again",
    )

    def sealing_keys(self) -> list[str]:
        """The key encryption keys, the current one first."""
        return [
            key.get_secret_value()
            for key in (self.key_encryption_key, *self.previous_key_encryption_keys)
        ]

    @field_validator("previous_key_encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
