"""Carrier documents fetched from FTP for many shipments, with progress and a manifest.

A job's shipments are split into chunks, each a command on the bus, queued
through the outbox in the transaction that creates the job. A chunk fetches
only the files still pending, so a chunk retried after a dropped connection
never downloads a finished file again. The last chunk to finish writes the
manifest: tracking number to a signed document URL, or why it is missing.
A job whose every file failed for want of a connection to the carrier's
server ends `failed`, not `completed`; while it runs, its last connection
failure is shown with its progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from datetime import timedelta
from typing import Any

import aioftp
import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from wharf_common import deadlines, outbox
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.errors import BadRequest, InvalidMessage, NotFound, TransientError
from wharf_common.events import CarrierDocumentsCompleted, event_envelope
from wharf_common.storage import ObjectStore

from .db import SCHEMA
from .ftp import CONNECTION_ERRORS, FtpPool, MissingFile, TooLarge
from .settings import CarrierIngestSettings

logger = logging.getLogger(__name__)

DOCUMENTS_QUEUE = "wharf.carrier-ingest.documents"
CHUNK = "carrier.documents.chunk"

_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ATTEMPTS_PER_FILE = 3
_PDF_MAGIC = b"%PDF-"

# Why a file is missing from the manifest, besides the dead chunk's own reason.
NOT_ON_SERVER = "not on the carrier's server"
TOO_LARGE = "too_large"
NOT_A_PDF = "not_a_pdf"
CARRIER_UNREACHABLE = "carrier_unreachable"


class CreateJob(BaseModel):
    """A carrier and the shipments whose documents to fetch."""

    model_config = ConfigDict(extra="forbid")

    carrier: str = Field(min_length=1, max_length=64)
    tracking_numbers: list[str] = Field(min_length=1, max_length=5000)
    deadline_seconds: float | None = Field(default=None, gt=0, le=86400)

    @field_validator("tracking_numbers")
    @classmethod
    def _safe_numbers(cls, numbers: list[str]) -> list[str]:
        for number in numbers:
            if not _NUMBER.match(number):
                raise ValueError(f"invalid tracking number {number[:100]!r}")
        return list(dict.fromkeys(numbers))


class JobId(BaseModel):
    id: uuid.UUID


class Chunk(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    carrier: str
    tracking_numbers: list[str]


class DocumentJobs:
    """Creates jobs, fetches their chunks and reports progress."""

    def __init__(
        self, settings: CarrierIngestSettings, pool: asyncpg.Pool[Any], store: ObjectStore
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store
        self._servers = {
            name: FtpPool(name, server) for name, server in settings.carrier_ftp.items()
        }

    async def close(self) -> None:
        """Close idle FTP connections."""
        for server in self._servers.values():
            await server.close()

    async def create(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """Accept a job and queue its chunks; answer with the job as it starts."""
        request = CreateJob.model_validate(data)
        if request.carrier not in self._servers:
            raise BadRequest(f"no document server is configured for {request.carrier!r}")
        job_id = uuid.uuid4()
        seconds = request.deadline_seconds or self.settings.documents_job_timeout
        deadline = deadlines.now() + timedelta(seconds=seconds)
        numbers = request.tracking_numbers
        size = self.settings.documents_chunk_size

        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO carrier_ingest.document_jobs (tenant, id, carrier, total, deadline)"
                " VALUES ($1, $2, $3, $4, $5)",
                tenant,
                job_id,
                request.carrier,
                len(numbers),
                deadline,
            )
            await conn.execute(
                "INSERT INTO carrier_ingest.document_items (job_id, tracking_number)"
                " SELECT $1, unnest($2::text[])",
                job_id,
                numbers,
            )
            for start in range(0, len(numbers), size):
                chunk = {
                    "job_id": str(job_id),
                    "carrier": request.carrier,
                    "tracking_numbers": numbers[start : start + size],
                }
                command = env.child(CHUNK, chunk, deadline=deadline)
                await outbox.enqueue(
                    conn, SCHEMA, command, kind="command", destination=DOCUMENTS_QUEUE
                )
        return await self._view(tenant, job_id)

    async def get(self, tenant: str, data: dict[str, Any], env: Envelope) -> Any:
        """A job's progress, and its signed manifest URL once it has finished."""
        return await self._view(tenant, JobId.model_validate(data).id)

    async def _view(self, tenant: str, job_id: uuid.UUID) -> dict[str, Any]:
        job = await self.pool.fetchrow(
            "SELECT j.*, count(*) FILTER (WHERE i.state = 'stored') AS done,"
            " count(*) FILTER (WHERE i.state = 'missing') AS missing"
            " FROM carrier_ingest.document_jobs j"
            " LEFT JOIN carrier_ingest.document_items i ON i.job_id = j.id"
            " WHERE j.tenant = $1 AND j.id = $2 GROUP BY j.tenant, j.id",
            tenant,
            job_id,
        )
        if job is None:
            raise NotFound("no such carrier-documents job")
        manifest_url = None
        if job["manifest_ref"]:
            # Signed afresh on every read, for as long as the URLs it lists.
            ttl = self.settings.documents_url_ttl
            manifest_url = await self.store.signed_url(job["manifest_ref"], expires_in=ttl)
        return {
            "id": str(job["id"]),
            "carrier": job["carrier"],
            "status": job["status"],
            "reason": job["detail"],
            "total": job["total"],
            "done": job["done"],
            "missing": job["missing"],
            "pending": job["total"] - job["done"] - job["missing"],
            "created_at": job["created_at"].isoformat(),
            "finished_at": job["finished_at"].isoformat() if job["finished_at"] else None,
            "manifest_url": manifest_url,
            "last_error": job["last_error"],
        }

    async def handle_chunk(self, delivery: Delivery) -> None:
        """Consumer handler of `DOCUMENTS_QUEUE`: fetch a chunk's pending files."""
        tenant = delivery.envelope.tenant
        if not tenant:
            raise InvalidMessage("a documents chunk without a tenant")
        chunk = Chunk.model_validate(delivery.body)
        server = self._servers.get(chunk.carrier)
        if server is None:
            raise InvalidMessage(f"no document server is configured for {chunk.carrier!r}")
        job = await self.pool.fetchrow(
            "SELECT status FROM carrier_ingest.document_jobs WHERE tenant = $1 AND id = $2",
            tenant,
            chunk.job_id,
        )
        if job is None:
            raise InvalidMessage(f"no job {chunk.job_id} for this tenant")
        if job["status"] != "running":
            return

        pending = await self._pending(chunk.job_id, chunk.tracking_numbers)
        if pending:
            await self._fetch(tenant, chunk.job_id, server, pending)
        await self._finish_if_done(tenant, chunk.job_id)

    async def _pending(self, job_id: uuid.UUID, numbers: list[str]) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT tracking_number FROM carrier_ingest.document_items"
            " WHERE job_id = $1 AND tracking_number = ANY($2::text[]) AND state = 'pending'",
            job_id,
            numbers,
        )
        return [row["tracking_number"] for row in rows]

    async def _fetch(
        self, tenant: str, job_id: uuid.UUID, server: FtpPool, numbers: list[str]
    ) -> None:
        queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        for number in numbers:
            queue.put_nowait((number, 1))
        failures: list[str] = []

        async def worker() -> None:
            drops = 0
            while not queue.empty() and drops < _ATTEMPTS_PER_FILE:
                connected = False
                try:
                    async with server.connection() as client:
                        connected = True
                        drops = 0
                        while not queue.empty():
                            number, attempt = queue.get_nowait()
                            try:
                                await self._fetch_one(tenant, job_id, server, client, number)
                            except CONNECTION_ERRORS:
                                if attempt >= _ATTEMPTS_PER_FILE:
                                    failures.append(number)
                                else:
                                    queue.put_nowait((number, attempt + 1))
                                raise
                except CONNECTION_ERRORS as exc:
                    drops += 1
                    logger.warning(
                        "FTP connection to the %s server dropped (%s); reconnecting",
                        server.name,
                        type(exc).__name__,
                    )
                    await self._record_error(job_id, _connection_error(server, exc, connected))
                    await asyncio.sleep(0.05 * drops)

        workers = min(len(numbers), server.server.max_connections)
        await asyncio.gather(*(worker() for _ in range(workers)))
        failures.extend(number for number, _ in _drain(queue))
        if failures:
            # Kept while the files stay pending, so that if the chunk's retries
            # run out they are missing for this reason, not the retries'.
            await self.pool.execute(
                "UPDATE carrier_ingest.document_items SET reason = $3"
                " WHERE job_id = $1 AND tracking_number = ANY($2::text[]) AND state = 'pending'",
                job_id,
                failures,
                CARRIER_UNREACHABLE,
            )
            raise TransientError(
                f"{len(failures)} files of job {job_id} could not be fetched from"
                f" the {server.name} server"
            )

    async def _fetch_one(
        self,
        tenant: str,
        job_id: uuid.UUID,
        server: FtpPool,
        client: aioftp.Client,
        number: str,
    ) -> None:
        path = server.server.path_template.format(tracking_number=number)
        try:
            data = await server.download(client, path, self.settings.documents_max_file_size)
        except MissingFile:
            await self._mark(job_id, number, "missing", reason=NOT_ON_SERVER)
            return
        except TooLarge:
            await self._mark(job_id, number, "missing", reason=TOO_LARGE)
            return
        # Documents are served as PDF, so whatever else the server holds is skipped.
        if not data.startswith(_PDF_MAGIC):
            await self._mark(job_id, number, "missing", reason=NOT_A_PDF)
            return
        key = f"{tenant}/carrier-documents/{job_id}/{number}.pdf"
        await self.store.put(key, data, "application/pdf")
        await self._mark(job_id, number, "stored", key=key)

    async def _record_error(self, job_id: uuid.UUID, error: str) -> None:
        await self.pool.execute(
            "UPDATE carrier_ingest.document_jobs SET last_error = $2 WHERE id = $1",
            job_id,
            error,
        )

    async def _mark(
        self,
        job_id: uuid.UUID,
        number: str,
        state: str,
        *,
        key: str | None = None,
        reason: str | None = None,
    ) -> None:
        await self.pool.execute(
            "UPDATE carrier_ingest.document_items SET state = $3, object_key = $4, reason = $5"
            " WHERE job_id = $1 AND tracking_number = $2",
            job_id,
            number,
            state,
            key,
            reason,
        )

    async def _finish_if_done(self, tenant: str, job_id: uuid.UUID) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            job = await conn.fetchrow(
                "SELECT status, carrier FROM carrier_ingest.document_jobs"
                " WHERE tenant = $1 AND id = $2 FOR UPDATE",
                tenant,
                job_id,
            )
            if job is None or job["status"] != "running":
                return
            items = await conn.fetch(
                "SELECT tracking_number, state, object_key, reason"
                " FROM carrier_ingest.document_items WHERE job_id = $1 ORDER BY tracking_number",
                job_id,
            )
            if any(item["state"] == "pending" for item in items):
                return
            documents: dict[str, Any] = {}
            ttl = self.settings.documents_url_ttl
            for item in items:
                if item["state"] == "stored":
                    url = await self.store.signed_url(item["object_key"], expires_in=ttl)
                    documents[item["tracking_number"]] = {"url": url}
                else:
                    documents[item["tracking_number"]] = {"missing": item["reason"]}
            manifest = {
                "job_id": str(job_id),
                "carrier": job["carrier"],
                "generated_at": deadlines.now().isoformat(),
                "documents": documents,
            }
            key = f"{tenant}/carrier-documents/{job_id}/manifest.json"
            await self.store.put(key, json.dumps(manifest).encode(), "application/json")
            # Only a server that never answered fails the job; any file it
            # did tell about, stored or not, makes the job complete.
            unreachable = all(item["reason"] == CARRIER_UNREACHABLE for item in items)
            status, reason = ("failed", CARRIER_UNREACHABLE) if unreachable else ("completed", None)
            await conn.execute(
                "UPDATE carrier_ingest.document_jobs SET status = $3, detail = $4,"
                " manifest_ref = $5, finished_at = now() WHERE tenant = $1 AND id = $2",
                tenant,
                job_id,
                status,
                reason,
                key,
            )
            stored = sum(1 for item in items if item["state"] == "stored")
            completed = CarrierDocumentsCompleted(
                job_id=job_id,
                carrier=job["carrier"],
                manifest_ref=key,
                stored=stored,
                missing=len(items) - stored,
            )
            await outbox.enqueue(
                conn,
                SCHEMA,
                event_envelope(completed, tenant=tenant),
                kind="event",
                destination=completed.event_type,
            )
        logger.info("carrier-documents job finished: %s", status, extra={"job_id": str(job_id)})

    async def on_dead(self, envelope: Envelope, reason: str) -> None:
        """Mark a dead chunk's pending files missing with the reason, then finish the job."""
        if not envelope.tenant:
            return
        try:
            chunk = Chunk.model_validate(envelope.body)
        except ValueError:
            return
        await self.pool.execute(
            "UPDATE carrier_ingest.document_items SET state = 'missing',"
            " reason = coalesce(reason, $3)"
            " WHERE job_id = $1 AND tracking_number = ANY($2::text[]) AND state = 'pending'",
            chunk.job_id,
            chunk.tracking_numbers,
            reason.split(":", 1)[0] if reason.startswith("deadline") else reason[:200],
        )
        await self._finish_if_done(envelope.tenant, chunk.job_id)


def _drain(queue: asyncio.Queue[tuple[str, int]]) -> list[tuple[str, int]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _connection_error(server: FtpPool, exc: BaseException, connected: bool) -> str:
    """What went wrong, naming the server but never its credentials."""
    what = "lost the connection to" if connected else "cannot connect to"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"{what} the {server.name} FTP server at {server.address}: {detail}"[:500]
