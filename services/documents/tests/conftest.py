from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wharf_documents.render import Renderer
from wharf_documents.settings import DocumentsSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


def corpus_dir() -> Path:
    configured = os.environ.get("WHARF_CORPUS")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    path = corpus_dir() / "documents" / "weasyprint-samples"
    if not path.is_dir():
        pytest.skip(f"corpus not found at {path}")
    return path


@pytest.fixture(scope="session")
async def renderer() -> AsyncIterator[Renderer]:
    settings = DocumentsSettings(render_workers=2, render_timeout=30)
    async with Renderer(settings) as shared:
        yield shared
