"""Wharf's webhooks service: tenants' endpoints, signed deliveries, retries and history."""

__version__ = "0.1.0"

__all__ = ["__version__"]
