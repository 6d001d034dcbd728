"""Run carrier-ingest: ``python -m wharf_carrier_ingest`` with its ``WHARF_*`` settings."""

from __future__ import annotations

from wharf_carrier_ingest.app import spec
from wharf_carrier_ingest.settings import CarrierIngestSettings
from wharf_common import runtime


def run() -> None:
    """Entry point of carrier-ingest."""
    runtime.main(spec(), CarrierIngestSettings())


if __name__ == "__main__":
    run()
