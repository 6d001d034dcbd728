"""Repository-wide pytest setup: the shared fixtures of wharf_common.testing."""

pytest_plugins = ["wharf_common.testing"]
