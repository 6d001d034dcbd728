"""The wharf command: the stack on one machine, and the scaling verbs."""

__version__ = "0.1.0"

__all__ = ["__version__"]
