"""Settings of the gateway."""

from __future__ import annotations

from pydantic import SecretStr

from wharf_cli.settings import BackendSettings
from wharf_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings, BackendSettings):
    """The gateway's settings: limits, deadlines, caches, rate limits, carrier signatures,
    and where the services run (for the ops API's task counts).

    `carrier_signing_secrets` maps a carrier to the HMAC-SHA256 key its posts are
    signed with; a carrier listed there must send a valid signature header.
    """

    service_name: str = "gateway"
    http_port: int = 8080

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: float = 0.25
    rate_limit_prefix: str = "wharf:ratelimit"
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    anonymous_per_second: float = 1.0
    anonymous_burst: int = 20

    max_body_size: int = 1024 * 1024
    max_upload_size: int = 25 * 1024 * 1024
    max_object_upload_size: int = 1024 * 1024 * 1024
    upload_url_seconds: int = 3600
    request_timeout: float = 10.0

    issuer: str = "wharf"
    token_leeway: float = 5.0
    jwks_refresh_interval: float = 60.0
    jwks_min_refetch: float = 1.0
    api_key_cache_seconds: float = 10.0

    carrier_signing_secrets: dict[str, SecretStr] = {}
    carrier_signature_header: str = "X-Wharf-Signature"
    carrier_job_timeout: float = 3600.0
