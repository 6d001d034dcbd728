"""Wharf's auth service: tenants, users, passwords, tokens, signing keys and API keys."""

__version__ = "0.1.0"

__all__ = ["__version__"]
