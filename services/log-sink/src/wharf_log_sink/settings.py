"""The log sink's settings."""

from __future__ import annotations

from pydantic import Field

from wharf_common.settings import ServiceSettings


class LogSinkSettings(ServiceSettings):
    """Settings of the log sink (environment variables prefixed ``WHARF_``)."""

    service_name: str = "log-sink"
    http_port: int = 8084

    sink_prefetch: int = Field(default=4000, ge=1, description="Log messages held unacked")
    batch_records: int = Field(default=10_000, ge=1, description="Write after this many records")
    batch_interval_ms: int = Field(default=200, ge=1, description="...or after this long")
    sink_writers: int = Field(default=2, ge=1, description="Batches written at once")
    retention_days: int = Field(default=14, ge=1)
    partitions_ahead: int = Field(default=2, ge=0)
    maintenance_interval: float = Field(default=3600.0, gt=0)
    search_max_limit: int = Field(default=1000, ge=1)

    cloudwatch_enabled: bool = False
    cloudwatch_log_group: str = "/wharf/logs"
    cloudwatch_log_stream: str | None = Field(
        default=None, description="Defaults to log-sink-<host>-<pid>, one stream per task"
    )
    cloudwatch_region: str = "us-east-1"
    cloudwatch_endpoint_url: str | None = None
    cloudwatch_interval: float = Field(default=1.0, gt=0, description="Poll for new rows")
    cloudwatch_timeout: float = Field(default=30.0, gt=0, description="Per PutLogEvents call")
