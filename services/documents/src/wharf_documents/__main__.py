"""Run the documents service: ``python -m wharf_documents``, settings from ``WHARF_*``.

The guard matters: render workers start through a forkserver, which
imports this module again in a fresh process.
"""

from __future__ import annotations

from wharf_common import runtime
from wharf_documents.app import spec
from wharf_documents.settings import DocumentsSettings


def run() -> None:
    """Entry point of the documents service."""
    runtime.main(spec(), DocumentsSettings())


if __name__ == "__main__":
    run()
