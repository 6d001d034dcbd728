"""Faults under the demo's traffic, on a RabbitMQ node and a PostgreSQL of the suite's own.

Each test sends documents in a batch, carrier payloads and log records
through a `wharf up --detach` stack, breaks something while they flow, then
counts in the database against what was accepted: nothing lost, nothing
twice, every job finished or failed with a reason. The figures of every
fault go to a table, printed at the end and written to
``WHARF_FAULT_RESULTS`` (default ``.wharf/fault-results.txt``).

Sizes: ``WHARF_FAULT_DOCUMENTS`` (batch items, default 48),
``WHARF_FAULT_PAYLOADS`` (carrier payloads, default 20) and
``WHARF_FAULT_LOGS`` (log records, default 200) per fault.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest

from wharf_common.envelope import Envelope

sys.path.insert(0, str(Path(__file__).parent))
from wharf_common.testservers import PostgresServer, RabbitNode, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DOCUMENTS = int(os.environ.get("WHARF_FAULT_DOCUMENTS", "48"))
PAYLOADS = int(os.environ.get("WHARF_FAULT_PAYLOADS", "20"))
LOGS = int(os.environ.get("WHARF_FAULT_LOGS", "200"))
RECOVERY_TIMEOUT = float(os.environ.get("WHARF_FAULT_RECOVERY_TIMEOUT", "120"))
PASSWORD = "fault suite passphrase"
EVENTS_PER_PAYLOAD = 2


@dataclass
class Figures:
    """What one fault did to the traffic sent through it."""

    fault: str
    sent: int = 0
    committed: int = 0
    duplicated: int = 0
    lost: int = 0
    failed_with_reason: int = 0
    recovery: float = 0.0

    def row(self) -> str:
        return (
            f"{self.fault:<36} {self.sent:>6} {self.committed:>9} {self.duplicated:>10}"
            f" {self.lost:>5} {self.failed_with_reason:>7} {self.recovery:>10.1f}"
        )


HEADER = (
    f"{'FAULT':<36} {'SENT':>6} {'COMMITTED':>9} {'DUPLICATED':>10} {'LOST':>5}"
    f" {'FAILED':>7} {'RECOVER_S':>10}"
)
RESULTS: list[Figures] = []


@dataclass
class Platform:
    """The suite's own servers and the stack on them."""

    rabbit: RabbitNode
    postgres: PostgresServer
    env: dict[str, str]
    url: str
    database_url: str

    def wharf(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wharf_cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pid(self, service: str) -> int:
        status = self.wharf("status", "--json")
        assert status.returncode == 0, status.stderr
        for entry in json.loads(status.stdout)["services"]:
            if entry["name"] == service:
                pids = [task["pid"] for task in entry["tasks"] if task["pid"]]
                assert pids, entry
                return int(pids[0])
        raise AssertionError(f"no service {service}")

    async def wait_ready(self, timeout: float = RECOVERY_TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while True:
                status = await asyncio.to_thread(self.wharf, "status", "--json")
                if status.returncode == 0:
                    services = json.loads(status.stdout)["services"]
                    if all(s["ready"] == s["desired"] for s in services):
                        return
                await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("faults")
    rabbit = RabbitNode()
    postgres = PostgresServer()
    try:
        rabbit.start()
        postgres.init()
        postgres.start()
        port = free_port()
        database_url = postgres.url("wharf_faults")
        env = {
            **os.environ,
            "WHARF_HOME": str(root / "home"),
            "WHARF_AMQP_URL": rabbit.amqp_url,
            "WHARF_MANAGEMENT_URL": rabbit.management_url,
            "WHARF_DATABASE_URL": database_url,
            "WHARF_STORAGE_URL": f"file://{root}/objects",
            "WHARF_HTTP_PORT": str(port),
            "WHARF_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "WHARF_RATE_LIMIT_PREFIX": f"wharf-faults:{uuid.uuid4().hex[:12]}",
            "WHARF_STOP_TIMEOUT": "5",
            "WHARF_RENDER_WORKERS": "1",
            "WHARF_RETRY_BASE_DELAY": "0.2",
            "WHARF_RETRY_MAX_DELAY": "2",
            "WHARF_MAX_ATTEMPTS": "10",
        }
        stack = Platform(rabbit, postgres, env, f"http://127.0.0.1:{port}", database_url)
        up = stack.wharf("up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield stack
        finally:
            stack.wharf("down", timeout=120)
            _write_results()
    finally:
        rabbit.destroy()
        postgres.destroy()


def _write_results() -> None:
    if not RESULTS:
        return
    table = "\n".join([HEADER, *(figures.row() for figures in RESULTS)])
    path = Path(os.environ.get("WHARF_FAULT_RESULTS", ".wharf/fault-results.txt"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table + "\n")
    print(f"\n{table}\n(written to {path})", file=sys.stderr)


@dataclass
class Tenant:
    id: str
    token: str
    key: str


class Traffic:
    """The demo's kinds of traffic, sent through the gateway and the log exchange."""

    def __init__(self, platform: Platform, http: aiohttp.ClientSession, tenant: Tenant) -> None:
        self.platform = platform
        self.http = http
        self.tenant = tenant

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenant.token}"}

    async def _post(self, path: str, *, attempts: int = 60, **options: Any) -> Any:
        """POST until accepted; a gateway answering 503 while a server is away is retried."""
        for _ in range(attempts):
            try:
                async with self.http.post(f"{self.platform.url}{path}", **options) as response:
                    body = await response.json(content_type=None)
                    if response.status < 500:
                        assert response.status in (200, 201, 202), body
                        return body
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        raise AssertionError(f"POST {path} never accepted")

    async def payloads(self, count: int, tag: str) -> list[str]:
        """Post `count` FedEx payloads of two events each; return their tracking numbers."""
        numbers = []
        for i in range(count):
            number = f"{tag}{i:05d}"
            body = {
                "output": {
                    "completeTrackResults": [
                        {
                            "trackingNumber": number,
                            "trackResults": [{"scanEvents": _scan_events(i)}],
                        }
                    ]
                }
            }
            await self._post(
                "/v1/carriers/fedex/events",
                data=json.dumps(body),
                headers={"X-API-Key": self.tenant.key, "Content-Type": "application/json"},
            )
            numbers.append(number)
        return numbers

    async def batch(self, count: int) -> str:
        items = [{"data": {"n": n}, "filename": f"doc-{n}.pdf"} for n in range(count)]
        body = {"template": "fault-label", "items": items, "bundle": "zip"}
        batch = await self._post("/v1/document-batches", json=body, headers=self.bearer)
        return str(batch["id"])

    async def logs(self, count: int) -> list[str]:
        """Publish `count` log records to the log exchange, confirmed; return their ids."""
        ids = [uuid.uuid4().hex for _ in range(count)]
        records = [
            {
                "id": record_id,
                "ts": datetime.now(UTC).isoformat(),
                "level": "INFO",
                "service": "fault-suite",
                "logger": "faults",
                "message": f"fault suite record {n}",
            }
            for n, record_id in enumerate(ids)
        ]
        for start in range(0, count, 50):
            await self._publish_logs(records[start : start + 50])
        return ids

    async def _publish_logs(self, records: list[dict[str, Any]]) -> None:
        envelope = Envelope(type="log.records", body=records)
        async with asyncio.timeout(RECOVERY_TIMEOUT):
            while True:
                try:
                    connection = await aio_pika.connect(self.platform.rabbit.amqp_url)
                    async with connection:
                        channel = await connection.channel()
                        exchange = await channel.get_exchange("wharf.logs")
                        await exchange.publish(
                            aio_pika.Message(
                                envelope.encode(),
                                content_type="application/json",
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                message_id=str(envelope.id),
                            ),
                            routing_key="fault-suite",
                        )
                    return
                except (aio_pika.exceptions.AMQPError, OSError, ConnectionError):
                    await asyncio.sleep(0.5)


def _scan_events(i: int) -> list[dict[str, Any]]:
    day = 1 + i % 27
    return [
        {
            "date": f"2024-06-{day:02d}T16:20:00-05:00",
            "eventType": "DL",
            "eventDescription": "Delivered",
            "scanLocation": {"city": "DALLAS", "stateOrProvinceCode": "TX", "countryCode": "US"},
        },
        {
            "date": f"2024-06-{day:02d}T07:45:00-05:00",
            "eventType": "OD",
            "eventDescription": "On FedEx vehicle for delivery",
            "scanLocation": {"city": "DALLAS", "stateOrProvinceCode": "TX", "countryCode": "US"},
        },
    ]


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    email = f"faults-{uuid.uuid4().hex[:8]}@example.com"
    async with aiohttp.ClientSession() as http:
        body = {"name": "Fault Freight", "admin_email": email, "admin_password": PASSWORD}
        async with http.post(f"{platform.url}/v1/tenants", json=body) as response:
            assert response.status == 201, await response.text()
            tenant_id = (await response.json())["tenant_id"]
        login = {"email": email, "password": PASSWORD}
        async with http.post(f"{platform.url}/v1/auth/token", json=login) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        key = {"name": "carrier", "scopes": ["carrier:ingest"]}
        async with http.post(f"{platform.url}/v1/api-keys", json=key, headers=headers) as r:
            assert r.status == 201, await r.text()
            carrier_key = (await r.json())["key"]
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("name", "fault-label")
        form.add_field("html", "<h1>Parcel {{ n }}</h1>")
        async with http.post(f"{platform.url}/v1/templates", data=form, headers=headers) as r:
            assert r.status == 201, await r.text()
    return Tenant(tenant_id, token, carrier_key)


@pytest.fixture
async def traffic(platform: Platform, tenant: Tenant) -> AsyncIterator[Traffic]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        yield Traffic(platform, http, tenant)


@dataclass
class Sent:
    """What one round of traffic got accepted."""

    batch: str
    numbers: list[str]
    logs: list[str]


async def _round(traffic: Traffic, tag: str, fault: Callable[[str], Awaitable[None]]) -> Sent:
    """Send every kind of traffic while `fault` happens; return what was accepted."""
    batch = await traffic.batch(DOCUMENTS)
    sending = asyncio.gather(traffic.payloads(PAYLOADS, tag), traffic.logs(LOGS))
    await fault(batch)
    numbers, logs = await sending
    return Sent(batch, numbers, logs)


async def _count(platform: Platform, sent: Sent, figures: Figures, started: float) -> None:
    """Wait until what was sent is committed, or the recovery timeout; record the figures."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        try:
            done = await _tally(platform, sent, figures)
        except (OSError, asyncpg.PostgresError):
            done = False
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    figures.recovery = time.monotonic() - started
    RESULTS.append(figures)


async def _tally(platform: Platform, sent: Sent, figures: Figures) -> bool:
    conn = await asyncpg.connect(platform.database_url)
    try:
        events = await conn.fetch(
            "SELECT tracking_number, count(*) AS n FROM carrier_ingest.tracking_events"
            " WHERE tracking_number = ANY($1::text[]) GROUP BY tracking_number",
            sent.numbers,
        )
        logs = await conn.fetch(
            "SELECT id, count(*) AS n FROM log_sink.records WHERE id = ANY($1::uuid[]) GROUP BY id",
            sent.logs,
        )
        batch = await conn.fetchrow(
            "SELECT status, total, done, failed, reason FROM documents.batches WHERE id = $1",
            uuid.UUID(sent.batch),
        )
        jobs = await conn.fetchrow(
            "SELECT count(*) AS rows, count(DISTINCT seq) AS items,"
            " count(*) FILTER (WHERE status = 'done') AS done,"
            " count(*) FILTER (WHERE status = 'failed' AND reason IS NOT NULL) AS failed"
            " FROM documents.jobs WHERE batch_id = $1",
            uuid.UUID(sent.batch),
        )
    finally:
        await conn.close()

    event_counts = {row["tracking_number"]: row["n"] for row in events}
    expected_events = len(sent.numbers) * EVENTS_PER_PAYLOAD
    committed_events = sum(min(n, EVENTS_PER_PAYLOAD) for n in event_counts.values())
    duplicated_events = sum(max(n - EVENTS_PER_PAYLOAD, 0) for n in event_counts.values())
    committed_logs = len(logs)
    duplicated_logs = sum(row["n"] - 1 for row in logs)

    figures.sent = expected_events + len(sent.logs) + DOCUMENTS
    figures.committed = committed_events + committed_logs + jobs["done"]
    figures.failed_with_reason = jobs["failed"]
    figures.duplicated = duplicated_events + duplicated_logs + (jobs["rows"] - jobs["items"])
    figures.lost = figures.sent - figures.committed - figures.failed_with_reason
    finished = batch is not None and batch["status"] in ("done", "failed")
    if batch is not None and batch["status"] == "failed":
        assert batch["reason"], "a failed batch must say why"
    return figures.lost == 0 and finished


def _assert_clean(figures: Figures) -> None:
    assert figures.duplicated == 0, figures
    assert figures.lost == 0, figures


async def _no_fault(batch: str) -> None:
    return None


async def test_baseline_without_a_fault(platform: Platform, traffic: Traffic) -> None:
    figures = Figures("none (baseline)")
    started = time.monotonic()
    sent = await _round(traffic, "BASE", _no_fault)

    await _count(platform, sent, figures, started)

    _assert_clean(figures)


async def test_documents_task_killed_mid_batch(platform: Platform, traffic: Traffic) -> None:
    figures = Figures("documents task SIGKILLed mid-batch")
    started = time.monotonic()

    async def kill(batch: str) -> None:
        pid = platform.pid("documents")
        async with asyncio.timeout(60):
            while not await _batch_started(platform, batch):
                await asyncio.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    sent = await _round(traffic, "KILL", kill)
    await _count(platform, sent, figures, started)
    await platform.wait_ready()

    _assert_clean(figures)


async def _batch_started(platform: Platform, batch: str) -> bool:
    # Mid-batch: the batch is accepted and rendering, not finished. Its row
    # exists as soon as the gateway answers, so the kill lands while the
    # first items render, however fast this machine is.
    conn = await asyncpg.connect(platform.database_url)
    try:
        done = await conn.fetchval(
            "SELECT done FROM documents.batches WHERE id = $1", uuid.UUID(batch)
        )
        assert done is None or done < DOCUMENTS, "the batch finished before the kill"
        return done is not None
    finally:
        await conn.close()


async def test_rabbitmq_restarted_under_traffic(platform: Platform, traffic: Traffic) -> None:
    figures = Figures("RabbitMQ restarted")
    started = time.monotonic()

    async def restart(batch: str) -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(platform.rabbit.restart)

    sent = await _round(traffic, "RMQ", restart)
    await _count(platform, sent, figures, started)
    await platform.wait_ready()

    _assert_clean(figures)


async def test_postgres_restarted_under_traffic(platform: Platform, traffic: Traffic) -> None:
    figures = Figures("PostgreSQL restarted")
    started = time.monotonic()

    async def restart(batch: str) -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(platform.postgres.restart)

    sent = await _round(traffic, "PG", restart)
    await _count(platform, sent, figures, started)
    await platform.wait_ready()

    _assert_clean(figures)


POISON_QUEUES = (
    "wharf.carrier-ingest.payloads",
    "wharf.documents.render",
    "wharf.log-sink.records",
)


async def test_poison_messages_go_to_dead_letters(platform: Platform, traffic: Traffic) -> None:
    figures = Figures("poison message injected")
    started = time.monotonic()
    before = await _dead_letters(platform)

    async def inject(batch: str) -> None:
        connection = await aio_pika.connect(platform.rabbit.amqp_url)
        async with connection:
            channel = await connection.channel()
            for queue in POISON_QUEUES:
                message = aio_pika.Message(
                    b"\x00not an envelope{",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=uuid.uuid4().hex,
                )
                await channel.default_exchange.publish(message, routing_key=queue)

    sent = await _round(traffic, "POISON", inject)
    await _count(platform, sent, figures, started)

    async with asyncio.timeout(30):
        while True:
            after = await _dead_letters(platform)
            if all(after[q] > before[q] for q in POISON_QUEUES):
                break
            await asyncio.sleep(0.5)
    _assert_clean(figures)


async def _dead_letters(platform: Platform) -> dict[str, int]:
    api = f"http://127.0.0.1:{platform.rabbit.management_port}/api/queues/%2F"
    headers = {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}  # guest:guest
    counts = {}
    async with aiohttp.ClientSession() as http:
        for queue in POISON_QUEUES:
            async with http.get(f"{api}/{queue}.dead", headers=headers) as response:
                body = await response.json() if response.status == 200 else {}
                counts[queue] = int(body.get("messages", 0) or 0)
    return counts


@pytest.mark.parametrize("service", ["gateway", "auth", "documents", "carrier-ingest", "log-sink"])
async def test_service_sigterm_under_load(
    platform: Platform, traffic: Traffic, service: str
) -> None:
    figures = Figures(f"{service} SIGTERMed under load")
    started = time.monotonic()

    async def terminate(batch: str) -> None:
        await asyncio.sleep(0.3)
        os.kill(platform.pid(service), signal.SIGTERM)

    sent = await _round(traffic, f"TERM{service[:4].upper()}", terminate)
    await _count(platform, sent, figures, started)
    await platform.wait_ready()

    _assert_clean(figures)
