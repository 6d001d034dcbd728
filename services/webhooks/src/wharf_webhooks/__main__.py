"""Run the webhooks service; settings come from the ``WHARF_*`` environment."""

from __future__ import annotations

from wharf_common import runtime
from wharf_webhooks.app import spec
from wharf_webhooks.settings import WebhookSettings


def run() -> None:
    """Entry point of the webhooks service."""
    runtime.main(spec(), WebhookSettings())


if __name__ == "__main__":
    run()
