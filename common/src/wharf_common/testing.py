"""Pytest fixtures for real PostgreSQL and a real S3-compatible server, each test isolated.

Registered for the whole repository by the root ``conftest.py``. The
PostgreSQL server comes from ``WHARF_TEST_DATABASE_URL`` (default: the local
server as ``postgres``); S3 is moto's standalone server on a free port.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import botocore.session
import pytest
import pytest_asyncio

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_REGION = "us-east-1"

_DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": TEST_REGION,
}
_AWS_OVERRIDES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


@pytest_asyncio.fixture
async def database_url() -> AsyncIterator[str]:
    """URL of a new, empty database that is dropped after the test."""
    server_url = os.environ.get("WHARF_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    name = _unique("wharf_test_")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of moto's S3 server, running with dummy credentials for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in _AWS_OVERRIDES:
                env.delenv(name, raising=False)
            for name, value in _DUMMY_AWS.items():
                env.setenv(name, value)
            yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _s3_admin(s3_server: str) -> Iterator[Any]:
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=s3_server, region_name=TEST_REGION
    )
    yield s3
    s3.close()


@pytest.fixture
def s3_url(s3_server: str, _s3_admin: Any) -> Iterator[str]:
    """Storage URL of a new bucket on the test S3 server; the bucket is removed after."""
    bucket = _unique("wharf-test-")
    query = urlencode({"endpoint_url": s3_server, "region": TEST_REGION, "create_bucket": "true"})
    yield f"s3://{bucket}?{query}"

    with contextlib.suppress(_s3_admin.exceptions.NoSuchBucket):
        listed = _s3_admin.list_objects_v2(Bucket=bucket)
        for item in listed.get("Contents", []):
            _s3_admin.delete_object(Bucket=bucket, Key=item["Key"])
        _s3_admin.delete_bucket(Bucket=bucket)
