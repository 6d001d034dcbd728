"""Carrier documents fetched from a real FTP server, through the gateway."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wharf_carrier_ingest.settings import CarrierIngestSettings, FtpServer

from .conftest import Stack
from .ftp import FTP_PASSWORD, FTPHandler, FtpThread

SHIPMENTS = 5000
CONNECTIONS = 12


class _Server(FtpThread):
    """A pyftpdlib server on a free port that drops one control connection mid-way."""

    def __init__(self, root: Path, drop_after: int) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.dropped = threading.Event()
        self.sessions = 0
        self.peak_sessions = 0
        server = self

        class Handler(FTPHandler):
            def on_connect(self) -> None:
                server.sessions += 1
                server.peak_sessions = max(server.peak_sessions, server.sessions)

            def on_disconnect(self) -> None:
                server.sessions -= 1

            def ftp_RETR(self, file: str) -> Any:
                if len(server.sent) >= drop_after and not server.dropped.is_set():
                    server.dropped.set()
                    self.close()
                    return None
                return super().ftp_RETR(file)

            def on_file_sent(self, file: str) -> None:
                server.sent[Path(file).name] += 1

        super().__init__(root, Handler, ("carrier",))


def _number(i: int) -> str:
    return f"JD{i:08d}"


@pytest.fixture
def ftp_server(tmp_path: Path) -> Iterator[_Server]:
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    root = tmp_path / "ftp"
    root.mkdir()
    for i in range(SHIPMENTS):
        if i % 50 != 7:
            (root / f"{_number(i)}.pdf").write_bytes(b"%PDF-1.4 " + _number(i).encode())
    with _Server(root, drop_after=SHIPMENTS // 3) as server:
        yield server


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    # Thousands of small files: the local store keeps this test quick.
    return f"file://{tmp_path}/objects"


@pytest.fixture
def ingest_settings(
    amqp_url: str, database_url: str, storage_url: str, ftp_server: _Server
) -> CarrierIngestSettings:
    return CarrierIngestSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=storage_url,
        log_to_bus=False,
        stop_timeout=2.0,
        retry_base_delay=0.05,
        outbox_poll_interval=0.05,
        documents_chunk_size=250,
        carrier_ftp={
            "dhl": FtpServer(
                host="127.0.0.1",
                port=ftp_server.port,
                user="carrier",
                password=FTP_PASSWORD,
                max_connections=CONNECTIONS,
            )
        },
    )


async def test_five_thousand_documents_with_missing_files_and_a_dropped_connection(
    stack: Stack, ftp_server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("wharf_carrier_ingest", "wharf_common"):
        caplog.set_level(logging.DEBUG, logger=name)
    tenant = await stack.tenant("docs@acme.example")
    numbers = [_number(i) for i in range(SHIPMENTS)]
    started = time.monotonic()

    async with stack.http.post(
        f"{stack.url}/v1/carrier-documents",
        json={"carrier": "dhl", "tracking_numbers": numbers},
        headers=tenant.bearer,
    ) as response:
        assert response.status == 202, await response.text()
        job = await response.json()
    assert (job["total"], job["status"]) == (SHIPMENTS, "running")

    while job["status"] != "completed":
        assert time.monotonic() - started < 100, job
        await asyncio.sleep(0.2)
        job = await stack.get(tenant, f"/v1/carrier-documents/{job['id']}")
        assert job["done"] + job["missing"] + job["pending"] == SHIPMENTS

    assert (job["done"], job["missing"], job["pending"]) == (4900, 100, 0)
    public = stack.gateway.runtime.settings.public_url
    async with stack.http.get(job["manifest_url"].replace(public, stack.url)) as response:
        assert response.status == 200
        manifest = await response.json(content_type=None)
    documents = manifest["documents"]
    assert len(documents) == SHIPMENTS
    assert documents[_number(7)] == {"missing": "not on the carrier's server"}
    async with stack.http.get(documents[_number(8)]["url"].replace(public, stack.url)) as response:
        assert await response.read() == b"%PDF-1.4 " + _number(8).encode()

    assert ftp_server.dropped.is_set()
    assert len(ftp_server.sent) == 4900
    assert max(ftp_server.sent.values()) == 1
    assert ftp_server.peak_sessions <= CONNECTIONS
    assert all(FTP_PASSWORD not in record.getMessage() for record in caplog.records)

    other = await stack.tenant("other@acme.example")
    async with stack.http.get(
        f"{stack.url}/v1/carrier-documents/{job['id']}", headers=other.bearer
    ) as response:
        assert response.status == 404


async def test_unknown_document_carrier_is_refused(stack: Stack) -> None:
    tenant = await stack.tenant("nodocs@acme.example")
    async with stack.http.post(
        f"{stack.url}/v1/carrier-documents",
        json={"carrier": "ups", "tracking_numbers": ["1Z999"]},
        headers=tenant.bearer,
    ) as response:
        assert response.status == 400
