"""What a carrier-documents job keeps from FTP: PDFs within the size cap, and a server's silence."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from wharf_carrier_ingest.settings import CarrierIngestSettings, FtpServer

from .conftest import Stack, Tenant
from .ftp import FTP_PASSWORD, FTPHandler, FtpThread

MAX_FILE_SIZE = 64 * 1024
# Far past the cap and past what socket buffers hold, so a download that
# does not stop at the cap would be seen reading it.
HUGE = b"%PDF-1.4 " + b"x" * (4 * 1024 * 1024)


class _Server(FtpThread):
    """A pyftpdlib server on a free port that answers SIZE to one user and not to another."""

    def __init__(self, root: Path) -> None:
        self.retrieved: list[str] = []
        server = self

        class Handler(FTPHandler):
            def ftp_RETR(self, file: str) -> Any:
                server.retrieved.append(Path(file).name)
                return super().ftp_RETR(file)

            def ftp_SIZE(self, path: str) -> Any:
                if self.username == "carrier":
                    return super().ftp_SIZE(path)
                self.respond("502 Command not implemented.")
                return None

        super().__init__(root, Handler, ("carrier", "no-size"))


class _HangUp:
    """A TCP port that hangs up on every connection, holding the second open until released."""

    def __init__(self) -> None:
        self.accepted = 0
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.accepted == 2:
            await self.release.wait()
        writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def stop(self) -> None:
        """Let the held connection go and refuse any further one."""
        self.release.set()
        if self.server is not None:
            self.server.close()


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    root = tmp_path / "ftp"
    root.mkdir()
    (root / "GOOD1.pdf").write_bytes(b"%PDF-1.7 first")
    (root / "GOOD2.pdf").write_bytes(b"%PDF-1.7 second")
    (root / "HUGE.pdf").write_bytes(HUGE)
    (root / "NOTPDF.pdf").write_bytes(b"<html>Sorry, this is not a PDF</html>")
    return root


@pytest.fixture
def ftp_server(ftp_root: Path) -> Iterator[_Server]:
    with _Server(ftp_root) as server:
        yield server


@pytest.fixture
async def hang_up() -> AsyncIterator[_HangUp]:
    listener = _HangUp()
    await listener.start()
    yield listener
    listener.stop()


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/objects"


@pytest.fixture
def ingest_settings(
    ingest_settings: CarrierIngestSettings, ftp_server: _Server, hang_up: _HangUp
) -> CarrierIngestSettings:
    """The stack's settings, with three carriers' FTP servers and a small size cap."""
    assert hang_up.server is not None
    hang_up_port = hang_up.server.sockets[0].getsockname()[1]

    def server(port: int, user: str = "carrier") -> FtpServer:
        return FtpServer(
            host="127.0.0.1",
            port=port,
            user=user,
            password=FTP_PASSWORD,
            max_connections=1,
            timeout=30,
        )

    carrier_ftp = {
        "dhl": server(ftp_server.port),
        "gls": server(ftp_server.port, "no-size"),
        "tnt": server(hang_up_port),
    }
    update = {"documents_max_file_size": MAX_FILE_SIZE, "carrier_ftp": carrier_ftp}
    return ingest_settings.model_copy(update=update)


async def _run(stack: Stack, tenant: Tenant, carrier: str, numbers: list[str]) -> Any:
    async with stack.http.post(
        f"{stack.url}/v1/carrier-documents",
        json={"carrier": carrier, "tracking_numbers": numbers},
        headers=tenant.bearer,
    ) as response:
        assert response.status == 202, await response.text()
        job = await response.json()
    return job


async def _finished(stack: Stack, tenant: Tenant, job: Any) -> Any:
    for _ in range(1500):
        if job["status"] != "running":
            return job
        await asyncio.sleep(0.05)
        job = await stack.get(tenant, f"/v1/carrier-documents/{job['id']}")
    raise AssertionError(f"the job did not finish: {job}")


async def _fetch(stack: Stack, url: str) -> tuple[str, bytes]:
    public = stack.gateway.runtime.settings.public_url
    async with stack.http.get(url.replace(public, stack.url)) as response:
        assert response.status == 200
        return response.content_type, await response.read()


@pytest.mark.parametrize("carrier", ["dhl", "gls"])
async def test_oversized_and_non_pdf_files_are_missing_and_not_stored(
    stack: Stack,
    carrier: str,
    ftp_server: _Server,
    tmp_path: Path,
) -> None:
    tenant = await stack.tenant(f"checks-{carrier}@acme.example")
    numbers = ["GOOD1", "HUGE", "NOTPDF", "GOOD2", "ABSENT"]

    job = await _finished(stack, tenant, await _run(stack, tenant, carrier, numbers))

    assert (job["status"], job["reason"], job["done"], job["missing"]) == (
        "completed",
        None,
        2,
        3,
    )
    _, body = await _fetch(stack, job["manifest_url"])
    documents = json.loads(body)["documents"]
    assert documents["HUGE"] == {"missing": "too_large"}
    assert documents["NOTPDF"] == {"missing": "not_a_pdf"}
    assert documents["ABSENT"] == {"missing": "not on the carrier's server"}
    for number, content in (("GOOD1", b"%PDF-1.7 first"), ("GOOD2", b"%PDF-1.7 second")):
        assert await _fetch(stack, documents[number]["url"]) == ("application/pdf", content)

    objects = tmp_path / "objects"
    stored = sorted(
        path.name
        for path in objects.rglob("*")
        if path.is_file() and ".meta" not in path.relative_to(objects).parts
    )
    assert stored == ["GOOD1.pdf", "GOOD2.pdf", "manifest.json"]
    if carrier == "dhl":
        # SIZE told the file was too large, so it was never asked for.
        assert "HUGE.pdf" not in ftp_server.retrieved


async def test_unreachable_server_shows_its_error_and_fails_the_job(
    stack: Stack, hang_up: _HangUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wharf_carrier_ingest")
    tenant = await stack.tenant("unreachable@acme.example")
    job = await _run(stack, tenant, "tnt", ["TN1", "TN2"])

    # The second connection hangs until released, so the job is still running.
    for _ in range(1500):
        if job["last_error"]:
            break
        await asyncio.sleep(0.05)
        job = await stack.get(tenant, f"/v1/carrier-documents/{job['id']}")
    assert job["status"] == "running"
    port = stack.ingest.runtime.settings.carrier_ftp["tnt"].port
    assert job["last_error"].startswith(f"cannot connect to the tnt FTP server at 127.0.0.1:{port}")
    assert FTP_PASSWORD not in job["last_error"]

    hang_up.stop()
    job = await _finished(stack, tenant, job)

    assert (job["status"], job["reason"]) == ("failed", "carrier_unreachable")
    assert (job["done"], job["missing"], job["pending"]) == (0, 2, 0)
    assert job["last_error"]
    _, body = await _fetch(stack, job["manifest_url"])
    documents = json.loads(body)["documents"]
    assert documents == {
        "TN1": {"missing": "carrier_unreachable"},
        "TN2": {"missing": "carrier_unreachable"},
    }
    assert all(FTP_PASSWORD not in record.getMessage() for record in caplog.records)
