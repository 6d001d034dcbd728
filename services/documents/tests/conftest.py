from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wharf_auth.app import spec as auth_spec
from wharf_auth.settings import AuthSettings
from wharf_common.testing import Running, StartService
from wharf_documents.app import spec as documents_spec
from wharf_documents.render import Renderer
from wharf_documents.settings import DocumentsSettings
from wharf_gateway.app import spec as gateway_spec
from wharf_gateway.settings import GatewaySettings

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


@pytest.fixture
def documents_settings(amqp_url: str, database_url: str, s3_url: str) -> DocumentsSettings:
    return DocumentsSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=s3_url,
        log_to_bus=False,
        stop_timeout=2.0,
        render_workers=2,
        render_timeout=20,
    )


@pytest.fixture
async def stack(
    amqp_url: str,
    database_url: str,
    s3_url: str,
    redis_prefix: str,
    documents_settings: DocumentsSettings,
    start_service: StartService,
) -> Callable[..., Awaitable[tuple[Running, Running]]]:
    """Start auth and the gateway, then documents with the given setting changes.

    A `storage_url` change applies to the gateway too, so both share one store.
    """

    async def start(**changes: Any) -> tuple[Running, Running]:
        auth = AuthSettings(
            amqp_url=amqp_url,
            database_url=database_url,
            log_to_bus=False,
            stop_timeout=2.0,
            argon2_time_cost=1,
            argon2_memory_cost=1024,
            argon2_parallelism=1,
        )
        gateway = GatewaySettings(
            amqp_url=amqp_url,
            storage_url=changes.get("storage_url", s3_url),
            log_to_bus=False,
            stop_timeout=2.0,
            rate_limit_prefix=redis_prefix,
            rate_limit_per_second=1000,
            rate_limit_burst=1000,
            anonymous_per_second=1000,
            anonymous_burst=1000,
        )
        await start_service(auth_spec(), auth)
        running_gateway = await start_service(gateway_spec(), gateway)
        documents = await start_service(
            documents_spec(), documents_settings.model_copy(update=changes)
        )
        return running_gateway, documents

    return start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
