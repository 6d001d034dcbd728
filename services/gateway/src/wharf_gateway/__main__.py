"""Run the gateway: ``python -m wharf_gateway`` with its ``WHARF_*`` settings."""

from __future__ import annotations

from wharf_common import runtime
from wharf_gateway.app import spec
from wharf_gateway.settings import GatewaySettings


def run() -> None:
    """Entry point of the gateway."""
    runtime.main(spec(), GatewaySettings())


if __name__ == "__main__":
    run()
