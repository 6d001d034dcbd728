"""wharf autoscale on the documents service: a backlog of real documents on the local stack.

Documents run as ``wharf up`` runs them (``python -m wharf_documents`` under the
supervisor, one render worker a task, scaled through the control API), and the
work arrives as the gateway sends it: one ``documents.create_document`` RPC per
document, or one ``documents.create_batch`` RPC for a batch, for the tenant of
the caller. The autoscaler sees the backlog and raises the task count; while
work remains, a relaxed drain target brings it back to one, so the tasks scaled
in drain mid-stream. Then every document must be rendered, stored and announced
exactly once, and none failed.

Single documents wait on ``wharf.documents.render``. A batch's items wait in
PostgreSQL and only a window of them is on the bus, so the autoscaler reads
them through the service's backlog query (the ``documents.backlog`` view) and
adds them to the depth of its queues; the window follows the consumers of
``wharf.documents.render-batch``, so the tasks it adds take batch items too.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from wharf_cli.autoscale import Autoscaler, Limits, Policy
from wharf_cli.home import Home
from wharf_cli.local import ControlServer, LocalBackend
from wharf_cli.services import SERVICES, service_table
from wharf_cli.supervisor import Supervisor, SupervisorOptions
from wharf_common import deadlines
from wharf_common.bus import Bus, dead_letter_queue
from wharf_common.consumer import Delivery
from wharf_common.envelope import Envelope
from wharf_common.queues import fetch_queues, vhost_of
from wharf_common.testing import DEFAULT_MANAGEMENT_URL
from wharf_documents.app import spec as documents_spec
from wharf_documents.context import BACKLOG_QUERY
from wharf_gateway.models import RenderBatch, RenderDocument

# 2,000 by default; raise them for a longer run.
DOCUMENTS = int(os.environ.get("WHARF_TEST_AUTOSCALE_DOCUMENTS", "2000"))
BATCH_ITEMS = int(os.environ.get("WHARF_TEST_AUTOSCALE_BATCH_ITEMS", "2000"))
RPC_QUEUE = "wharf.documents.rpc"
RENDER_QUEUE = "wharf.documents.render"
BATCH_QUEUE = "wharf.documents.render-batch"
AUDIT_QUEUE = "wharf.autoscale-audit.events"
LIMITS = {"documents": Limits(1, 3)}
# A bar as wide as the parcel number: no text, so no font to subset (most of a
# small render's time), and a render takes a few milliseconds. The test is
# about scaling, not WeasyPrint.
TEMPLATE = '<div style="width: {{ n % 500 + 1 }}px; height: 8px; background: #000"></div>'
# Enough RPCs in flight to fill the queue faster than one worker empties it.
SENDERS = 32

# About two minutes on two cores shared at a load average near 10; the limit leaves room.
pytestmark = pytest.mark.timeout(240)


def _autoscaler(backend: LocalBackend, vhost: str, database_url: str, policy: Policy) -> Autoscaler:
    """`wharf autoscale` as the command builds it for the documents service."""
    spec = service_table(SERVICES)["documents"]
    return Autoscaler(
        backend,
        LIMITS,
        _management_url(),
        vhost=vhost,
        policy=policy,
        database_url=database_url,
        backlog_queries={spec.name: spec.backlog_query},
    )


def _management_url() -> str:
    return os.environ.get("WHARF_TEST_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL)


@pytest.fixture
async def documents_stack(
    amqp_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Supervisor, LocalBackend]]:
    """The documents service as a one-task local stack with its control API."""
    spec = service_table(SERVICES)["documents"]
    env = {
        **os.environ,
        "WHARF_AMQP_URL": amqp_url,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_HTTP_HOST": "127.0.0.1",
        "WHARF_STORAGE_URL": f"file://{tmp_path}/objects",
        "WHARF_LOG_TO_BUS": "false",
        "WHARF_RENDER_WORKERS": "1",
        "WHARF_STOP_TIMEOUT": "20",
    }
    home = Home(tmp_path / "wharf")
    options = SupervisorOptions(stop_timeout=20.0, probe_interval=0.2, backoff_base=0.2)
    supervisor = Supervisor([spec], home, env=env, cwd=tmp_path, options=options)
    server = ControlServer(supervisor, home, asyncio.Event())
    await server.start()
    await supervisor.start()
    backend = LocalBackend(home)
    try:
        async with asyncio.timeout(60):
            await supervisor.wait_settled()
        yield supervisor, backend
    finally:
        await backend.close()
        await supervisor.stop()
        await server.close()


async def _wait_for(check: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.2)


async def _call(bus: Bus, tenant: str, operation: str, data: dict[str, Any]) -> Any:
    """One RPC as the gateway makes it for a verified caller of `tenant`."""
    caller = {"tenant": tenant, "subject": "erp", "roles": [], "scopes": ["documents:write"]}
    envelope = Envelope(
        type=operation,
        tenant=tenant,
        deadline=deadlines.deadline_in(30.0),
        body={"data": data, "caller": caller},
    )
    return await bus.call(RPC_QUEUE, envelope, timeout=30.0)


async def _submit(bus: Bus, tenant: str, count: int) -> list[str]:
    """Post `count` documents, `SENDERS` at a time; the ids of the accepted jobs."""
    senders = asyncio.Semaphore(SENDERS)

    async def post(n: int) -> str:
        body = RenderDocument(template="label", data={"n": n}, filename=f"parcel-{n}.pdf")
        data = body.model_dump(mode="json")
        async with senders:
            job = await _call(bus, tenant, "documents.create_document", data)
        assert job["status"] in ("queued", "rendering", "done"), job
        return str(job["id"])

    return list(await asyncio.gather(*(post(n) for n in range(count))))


async def _finished(db: asyncpg.Connection) -> int:
    query = "SELECT count(*) FROM documents.jobs WHERE status IN ('done', 'failed')"
    count: int = await db.fetchval(query)
    return count


async def _depths(vhost: str) -> dict[str, int]:
    """Ready plus unacknowledged messages of every queue, as the management API last saw them."""
    queues = await fetch_queues(_management_url(), vhost)
    return {
        queue["name"]: int(queue.get("messages_ready") or 0)
        + int(queue.get("messages_unacknowledged") or 0)
        for queue in queues
    }


def test_every_scaler_counts_the_batch_backlog_through_one_query() -> None:
    # The query the service publishes for ECS, which `wharf autoscale` runs too
    # (k8s/tests check that KEDA's postgresql trigger runs the same).
    spec = service_table(SERVICES)["documents"]

    assert spec.backlog_query == documents_spec().backlog_query == BACKLOG_QUERY
    assert "documents.backlog" in BACKLOG_QUERY


@pytest.mark.slow
async def test_documents_backlog_scales_out_and_scale_in_loses_no_document(
    documents_stack: tuple[Supervisor, LocalBackend],
    amqp_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    supervisor, backend = documents_stack
    home = Home(tmp_path / "wharf")
    vhost = vhost_of(amqp_url)
    # A task renders these bars at 10 to 30 a second, and the senders keep
    # only a few hundred waiting when a task keeps up with them: with a
    # one-second target, any backlog over 60 needs every task the limits
    # allow. The long cooldown holds the count while the backlog drains.
    scale_out = Policy(target_seconds=1.0, cooldown=600.0, default_rate=10.0)
    scaler = _autoscaler(backend, vhost, database_url, scale_out)
    tenant = str(uuid.uuid4())
    announced: collections.Counter[str] = collections.Counter()

    async def audit(delivery: Delivery) -> None:
        announced[str(delivery.envelope.body["id"])] += 1

    db = await asyncpg.connect(database_url)
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    stop = asyncio.Event()
    autoscaling = asyncio.create_task(scaler.run(0.5, stop))
    try:
        await bus.subscribe(AUDIT_QUEUE, ["document.rendered", "document.failed"], audit)
        await _call(bus, tenant, "documents.create_template", {"name": "label", "html": TEMPLATE})
        job_ids = await _submit(bus, tenant, DOCUMENTS)
        await _wait_for(_settled_at(supervisor, 3), 60)
        new_logs = [home.logs / f"documents-{slot}.log" for slot in (2, 3)]

        async def new_tasks_render() -> bool:
            return all("handled document.render" in log.read_text() for log in new_logs)

        async def mostly_rendered() -> bool:
            return await _finished(db) >= DOCUMENTS * 0.85

        await _wait_for(new_tasks_render, 30)
        await _wait_for(mostly_rendered, 150)
        stop.set()
        await autoscaling
        # While work remains, a drain target of an hour needs a single task: the
        # autoscaler scales in and the two newest tasks drain mid-stream.
        relaxed = Policy(target_seconds=3600.0, cooldown=0.0, default_rate=10.0)
        scale_in = _autoscaler(backend, vhost, database_url, relaxed)
        shrunk = (await scale_in.step())["documents"]
        unfinished_at_scale_in = DOCUMENTS - await _finished(db)

        async def all_finished() -> bool:
            return await _finished(db) >= DOCUMENTS

        async def all_announced() -> bool:
            return sum(announced.values()) >= DOCUMENTS

        async def queues_empty() -> bool:
            depths = await _depths(vhost)
            return depths[RENDER_QUEUE] == 0 and depths[dead_letter_queue(RENDER_QUEUE)] == 0

        await _wait_for(all_finished, 90)
        await _wait_for(_settled_at(supervisor, 1), 60)
        await _wait_for(all_announced, 30)
        await _wait_for(queues_empty, 30)
        settled = (await scaler.step())["documents"]
        jobs = await db.fetch("SELECT id, status, attempts, object_key, bytes FROM documents.jobs")
        outbox = await db.fetchval("SELECT count(*) FROM documents.outbox")
    finally:
        stop.set()
        await autoscaling
        await bus.close()
        await db.close()

    objects = tmp_path / "objects"
    pdfs = objects.glob(f"{tenant}/documents/*")
    stored = {path.relative_to(objects).as_posix() for path in pdfs}
    drained = [log.read_text() for log in new_logs]
    stopped_at = max(t for slot in (2, 3) for t in _times(home.logs / f"documents-{slot}.log"))
    last_render_at = max(_times(home.logs / "documents-1.log", "handled document.render"))

    assert (shrunk.count, shrunk.reason.startswith("backlog")) == (1, True)
    assert unfinished_at_scale_in > 0
    # The remaining task went on rendering after the others began to drain.
    assert last_render_at > stopped_at
    for log in drained:
        assert "draining in-flight work" in log and "documents stopped" in log
    assert (settled.count, settled.reason) == (1, "steady")
    # Every accepted document rendered once, stored once, announced once; none failed.
    assert sorted(str(job["id"]) for job in jobs) == sorted(job_ids)
    assert collections.Counter(job["status"] for job in jobs) == {"done": DOCUMENTS}
    assert {job["attempts"] for job in jobs} == {1}
    assert stored == {f"{tenant}/documents/{job['id']}.pdf" for job in jobs}
    assert {job["object_key"] for job in jobs} == stored
    for job in jobs:
        pdf = (objects / job["object_key"]).read_bytes()
        assert pdf.startswith(b"%PDF-") and len(pdf) == job["bytes"]
    assert announced == dict.fromkeys(job_ids, 1)
    assert outbox == 0


@pytest.mark.slow
async def test_big_batch_scales_out_and_scale_in_loses_no_item(
    documents_stack: tuple[Supervisor, LocalBackend],
    amqp_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    supervisor, backend = documents_stack
    home = Home(tmp_path / "wharf")
    vhost = vhost_of(amqp_url)
    # As in the test above: at least 10 renders/s a task, so 2,000 items to
    # drain in 5 s need every task the limits allow; the cooldown holds them.
    scale_out = Policy(target_seconds=5.0, cooldown=600.0, default_rate=10.0)
    scaler = _autoscaler(backend, vhost, database_url, scale_out)
    tenant = str(uuid.uuid4())
    announced: collections.Counter[str] = collections.Counter()
    completed: list[dict[str, Any]] = []

    async def audit(delivery: Delivery) -> None:
        envelope = delivery.envelope
        if envelope.type == "document.batch.completed":
            completed.append(envelope.body)
        else:
            announced[str(envelope.body["id"])] += 1

    db = await asyncpg.connect(database_url)
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    stop = asyncio.Event()
    autoscaling = asyncio.create_task(scaler.run(0.5, stop))
    try:
        events = ["document.rendered", "document.failed", "document.batch.completed"]
        await bus.subscribe(AUDIT_QUEUE, events, audit)
        await _call(bus, tenant, "documents.create_template", {"name": "label", "html": TEMPLATE})
        items = [{"data": {"n": n}, "filename": f"parcel-{n}.pdf"} for n in range(BATCH_ITEMS)]
        body = RenderBatch.model_validate({"template": "label", "items": items, "bundle": "zip"})
        batch = await _call(bus, tenant, "documents.create_batch", body.model_dump(mode="json"))
        batch_id = uuid.UUID(batch["id"])
        await _wait_for(_settled_at(supervisor, 3), 60)
        new_logs = [home.logs / f"documents-{slot}.log" for slot in (2, 3)]

        async def new_tasks_render() -> bool:
            return all("handled document.render" in log.read_text() for log in new_logs)

        async def window_widened() -> bool:
            # One task with one worker keeps at most two items of a batch in flight.
            return await _in_flight(db, batch_id) > 2

        async def half_done() -> bool:
            return await _batch_finished(db, batch_id) >= BATCH_ITEMS // 2

        await _wait_for(new_tasks_render, 30)
        await _wait_for(window_widened, 30)
        await _wait_for(half_done, 150)
        stop.set()
        await autoscaling
        # While items remain, a drain target of an hour needs a single task:
        # the autoscaler scales in and the two newest tasks drain mid-batch.
        relaxed = Policy(target_seconds=3600.0, cooldown=0.0, default_rate=10.0)
        scale_in = _autoscaler(backend, vhost, database_url, relaxed)
        shrunk = (await scale_in.step())["documents"]
        unfed_at_scale_in = await db.fetchval("SELECT items FROM documents.backlog")

        async def batch_ended() -> bool:
            status = await db.fetchval(
                "SELECT status FROM documents.batches WHERE id = $1", batch_id
            )
            return status in ("done", "failed")

        async def all_announced() -> bool:
            return sum(announced.values()) >= BATCH_ITEMS and len(completed) >= 1

        async def queues_empty() -> bool:
            depths = await _depths(vhost)
            return depths[BATCH_QUEUE] == 0 and depths[dead_letter_queue(BATCH_QUEUE)] == 0

        await _wait_for(batch_ended, 150)
        await _wait_for(_settled_at(supervisor, 1), 60)
        await _wait_for(all_announced, 30)
        await _wait_for(queues_empty, 30)
        settled = (await scaler.step())["documents"]
        unfed = await db.fetchval("SELECT items FROM documents.backlog")
        finished = await db.fetchrow(
            "SELECT status, done, failed, bundle_key FROM documents.batches WHERE id = $1",
            batch_id,
        )
        jobs = await db.fetch(
            "SELECT id, status, attempts, object_key FROM documents.jobs WHERE batch_id = $1",
            batch_id,
        )
        outbox = await db.fetchval("SELECT count(*) FROM documents.outbox")
    finally:
        stop.set()
        await autoscaling
        await bus.close()
        await db.close()

    objects = tmp_path / "objects"
    stored = {p.relative_to(objects).as_posix() for p in objects.glob(f"{tenant}/documents/*")}
    drained = [log.read_text() for log in new_logs]
    stopped_at = max(t for slot in (2, 3) for t in _times(home.logs / f"documents-{slot}.log"))
    last_render_at = max(_times(home.logs / "documents-1.log", "handled document.render"))
    with zipfile.ZipFile(objects / finished["bundle_key"]) as bundle:
        names = bundle.namelist()

    assert (shrunk.count, shrunk.reason.startswith("backlog")) == (1, True)
    assert unfed_at_scale_in > 0
    # The remaining task went on rendering after the others began to drain.
    assert last_render_at > stopped_at
    for log in drained:
        assert "draining in-flight work" in log and "documents stopped" in log
    assert (settled.count, settled.reason) == (1, "steady")
    # Every item rendered once, stored once, announced once; the batch bundled all of them.
    assert (finished["status"], finished["done"], finished["failed"]) == ("done", BATCH_ITEMS, 0)
    assert unfed == 0
    assert len(jobs) == BATCH_ITEMS
    assert collections.Counter(job["status"] for job in jobs) == {"done": BATCH_ITEMS}
    assert {job["attempts"] for job in jobs} == {1}
    assert {job["object_key"] for job in jobs} == stored
    assert announced == {str(job["id"]): 1 for job in jobs}
    assert [(event["id"], event["done"]) for event in completed] == [(str(batch_id), BATCH_ITEMS)]
    assert sorted(names) == sorted(f"parcel-{n}.pdf" for n in range(BATCH_ITEMS))
    assert outbox == 0


async def _in_flight(db: asyncpg.Connection, batch_id: uuid.UUID) -> int:
    """Items of the batch on the bus or rendering."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM documents.jobs WHERE batch_id = $1"
        " AND fed AND status IN ('queued', 'rendering')",
        batch_id,
    )
    return count


async def _batch_finished(db: asyncpg.Connection, batch_id: uuid.UUID) -> int:
    count: int = await db.fetchval(
        "SELECT done + failed FROM documents.batches WHERE id = $1", batch_id
    )
    return count


def _times(log: Path, message: str = "stopping") -> list[datetime]:
    """When a task logged the records whose message starts with `message`."""
    records = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [datetime.fromisoformat(r["ts"]) for r in records if r["message"].startswith(message)]


def _settled_at(supervisor: Supervisor, count: int) -> Callable[[], Awaitable[bool]]:
    """A check that `count` documents tasks are desired, running and ready, and no more."""

    async def check() -> bool:
        state = supervisor.status()[0]
        ready = [task for task in state.tasks if task.ready and task.phase == "running"]
        return state.desired == count == len(state.tasks) == len(ready)

    return check
