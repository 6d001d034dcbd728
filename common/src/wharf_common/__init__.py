"""Wharf's shared library: what every service needs, written once."""

__version__ = "0.1.0"

__all__ = ["__version__"]
