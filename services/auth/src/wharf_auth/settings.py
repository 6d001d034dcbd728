"""Settings of the auth service."""

from __future__ import annotations

from wharf_common.settings import SealingSettings


class AuthSettings(SealingSettings):
    """Auth's settings: token lifetimes, key encryption, hashing cost and login throttling."""

    service_name: str = "auth"
    http_port: int = 8081

    issuer: str = "wharf"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600

    argon2_time_cost: int = 3
    argon2_memory_cost: int = 64 * 1024
    argon2_parallelism: int = 2

    throttle_window: float = 900.0
    throttle_account_free: int = 5
    throttle_address_free: int = 20
    throttle_base_delay: float = 1.0
    throttle_max_delay: float = 900.0
