"""Wharf's gateway: the public HTTP API, authentication at the edge, per-tenant limits."""

__version__ = "0.1.0"

__all__ = ["__version__"]
