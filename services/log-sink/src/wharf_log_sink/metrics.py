"""Prometheus metrics of the log sink."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECORDS_WRITTEN = Counter("wharf_log_sink_records_written_total", "Log records committed")
RECORDS_REPEATED = Counter(
    "wharf_log_sink_records_repeated_total", "Records received again and not written twice"
)
RECORDS_DEAD = Counter(
    "wharf_log_sink_records_dead_total", "Records sent to the dead-letter queue, unparseable"
)
BATCH_RECORDS = Histogram(
    "wharf_log_sink_batch_records",
    "Records per written batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
)
WRITE_SECONDS = Histogram(
    "wharf_log_sink_write_seconds",
    "Time to commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITE_FAILURES = Counter(
    "wharf_log_sink_write_failures_total", "Batch writes that failed and will be retried"
)
FORWARDED = Counter("wharf_log_sink_forwarded_total", "Records accepted by CloudWatch Logs")
FORWARD_DUPLICATES = Counter(
    "wharf_log_sink_forward_duplicates_total",
    "Records sent again after a timeout, which CloudWatch may now hold twice",
)
FORWARD_RETRIES = Counter(
    "wharf_log_sink_forward_retries_total", "PutLogEvents calls retried, by reason", ["reason"]
)
FORWARD_REJECTED = Counter(
    "wharf_log_sink_forward_rejected_total",
    "Records CloudWatch refused (too old, too new, expired), by reason",
    ["reason"],
)
