"""Wharf's log sink: every service's log records, stored, searchable and forwarded."""

from wharf_log_sink.query import RPC_QUEUE, SEARCH_TYPE, LogSearch

__version__ = "0.1.0"

__all__ = ["RPC_QUEUE", "SEARCH_TYPE", "LogSearch", "__version__"]
