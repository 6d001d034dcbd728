"""Benchmark: raw carrier payloads on the bus to committed events and published status changes.

Not a test. Runs carrier-ingest in this process against the local RabbitMQ and
PostgreSQL (a throwaway vhost and database) with a local object store, and
measures, in the same run, a bare aio-pika consume-and-ack loop over the
same number of messages, before and after the service. The summary gives
the ratio of rates and the ratio of CPU per message, the steadier of the
two on a shared machine. Sizes come from flags or, for each flag, its
variable:

    .venv/bin/python services/carrier-ingest/bench.py --payloads 20000 --events 1
    WHARF_BENCH_PAYLOADS=20000 .venv/bin/python services/carrier-ingest/bench.py

--profile FILE (WHARF_BENCH_PROFILE) also writes a cProfile of the service's
stretch to FILE (it slows the run; read it with `python -m pstats FILE`).
The servers are those the tests use (WHARF_TEST_DATABASE_URL,
WHARF_TEST_MANAGEMENT_URL, WHARF_TEST_AMQP_HOST). The vhost and database it
creates are removed at the end, also when it is stopped with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg

from wharf_carrier_ingest.app import spec
from wharf_carrier_ingest.ingest import PAYLOAD_RECEIVED, PAYLOADS_QUEUE, STATUS_CHANGED
from wharf_carrier_ingest.settings import CarrierIngestSettings
from wharf_common.bus import EVENTS_EXCHANGE, command_queue_arguments
from wharf_common.envelope import Envelope
from wharf_common.runtime import Runtime

DATABASE = os.environ.get(
    "WHARF_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MANAGEMENT = os.environ.get("WHARF_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
AMQP_HOST = os.environ.get("WHARF_TEST_AMQP_HOST", "guest:guest@127.0.0.1:5672")
TENANT = str(uuid.uuid4())


def fedex_payload(number: str, events: int) -> bytes:
    start = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
    scans = [
        {
            "date": (start + timedelta(hours=i)).isoformat(),
            "eventType": "DL" if i == events - 1 else "IT",
            "eventDescription": "Delivered" if i == events - 1 else "In transit",
            "scanLocation": {"city": "MEMPHIS", "countryCode": "US"},
        }
        for i in range(events)
    ]
    result = {"trackingNumberInfo": {"trackingNumber": number}, "scanEvents": scans}
    body = {"trackingNumber": number, "trackResults": [result]}
    return json.dumps({"output": {"completeTrackResults": [body]}}).encode()


async def bare_loop(amqp_url: str, prefetch: int, payloads: int, name: str) -> tuple[float, float]:
    """A plain consume-and-ack loop on a quorum queue: messages per second, CPU ms per message."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(name, durable=True, arguments=command_queue_arguments())
    body = Envelope(type="bench", body={"payload_ref": "x" * 80}).encode()
    await asyncio.gather(
        *(channel.default_exchange.publish(aio_pika.Message(body), name) for _ in range(payloads))
    )
    consume = await connection.channel()
    await consume.set_qos(prefetch_count=prefetch)
    queue = await consume.get_queue(name)
    done = asyncio.Event()
    seen = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        Envelope.decode(message.body)
        await message.ack()
        seen += 1
        if seen == payloads:
            done.set()

    meter = CpuMeter()
    started = time.perf_counter()
    await queue.consume(on_message)
    await done.wait()
    elapsed = time.perf_counter() - started
    print(f"CPU per message of the bare loop: {meter.per(payloads)}")
    await connection.close()
    return payloads / elapsed, meter.own_ms(payloads)


def cpu_seconds(*names: str) -> float:
    """CPU seconds used so far by every process with one of these command names.

    Read from /proc, so the broker and the database count even though they
    are other processes; 0 where /proc is not there.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text[text.index("(") + 1 :].partition(") ")
        if name in names:
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class CpuMeter:
    """CPU seconds of this process, RabbitMQ and PostgreSQL over a stretch of work."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        return time.process_time(), cpu_seconds("beam.smp"), cpu_seconds("postgres")

    def own_ms(self, count: int) -> float:
        """Milliseconds of this process's CPU per unit of work since the meter started."""
        return 1000 * (time.process_time() - self.start[0]) / count

    def per(self, count: int) -> str:
        """Milliseconds of CPU per unit of work since the meter started, by process."""
        now = self._sample()
        this, broker, database = (
            1000 * (b - a) / count for a, b in zip(self.start, now, strict=True)
        )
        return f"service {this:.3f} ms, RabbitMQ {broker:.3f} ms, PostgreSQL {database:.3f} ms"


async def service_run(
    args: argparse.Namespace, amqp_url: str, database_url: str, storage: str
) -> tuple[float, float, float]:
    """Through carrier-ingest: events per second, payloads per second, CPU ms per payload."""
    payloads, events, profile = args.payloads, args.events, args.profile
    settings = CarrierIngestSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"file://{storage}",
        log_to_bus=False,
        log_level="WARNING",
        prefetch=512,
        concurrency=256,
        db_pool_max=20,
        outbox_poll_interval=0.1,
    )
    rt = Runtime(spec(), settings)
    try:
        return await _through_service(rt, payloads, events, profile)
    finally:
        await rt.close()


async def _through_service(
    rt: Runtime, payloads: int, events: int, profile: str | None
) -> tuple[float, float, float]:
    await rt.spec.setup(rt)
    await rt.connect()
    numbers = [f"7{i:011d}" for i in range(payloads)]
    await rt.db.executemany(
        "INSERT INTO carrier_ingest.shipments (tenant, id, carrier, tracking_number)"
        " VALUES ($1, $2, 'fedex', $3)",
        [(TENANT, uuid.uuid4(), number) for number in numbers],
    )
    received = datetime.now(UTC).isoformat()
    envelopes = []
    for number in numbers:
        ref = f"{TENANT}/carrier-payloads/fedex/bench/{number}"
        await rt.store.put(ref, fedex_payload(number, events), "application/json")
        body = {
            "ingest_id": str(uuid.uuid4()),
            "carrier": "fedex",
            "payload_ref": ref,
            "content_type": "application/json",
            "received_at": received,
        }
        envelopes.append(Envelope(type=PAYLOAD_RECEIVED, tenant=TENANT, body=body))
    await rt.bus.declare_command_queue(PAYLOADS_QUEUE)
    for start in range(0, payloads, 1000):
        await asyncio.gather(
            *(rt.bus.send(PAYLOADS_QUEUE, e) for e in envelopes[start : start + 1000])
        )

    # Status changes collect in a queue of their own and are counted, not
    # consumed, so that the CPU of this process is the service's alone.
    listener = await rt.bus.channel()
    changes = await listener.declare_queue(exclusive=True)
    await changes.bind(EVENTS_EXCHANGE, STATUS_CHANGED)

    profiler = cProfile.Profile() if profile else None
    meter = CpuMeter()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    await rt.start_work()
    committed = await _until_committed(rt, payloads * events, started)
    published = await _published(listener, changes.name)
    print(f"events committed after {committed:.2f} s; status changes published so far {published}")
    async with asyncio.timeout(600):
        while published < payloads:
            await asyncio.sleep(0.05)
            published = await _published(listener, changes.name)
    elapsed = time.perf_counter() - started
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    print(f"CPU per payload: {meter.per(payloads)}")
    cpu = meter.own_ms(payloads)
    stored = await rt.db.fetchval("SELECT count(*) FROM carrier_ingest.tracking_events")
    assert stored == payloads * events, stored
    rt.stopping.set()
    await rt.drain()
    return stored / elapsed, payloads / elapsed, cpu


async def _published(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    # aio-pika remembers a queue's first declaration; ask the broker anew.
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    assert declared.message_count is not None
    return declared.message_count


async def _until_committed(rt: Runtime, count: int, started: float) -> float:
    stored = 0
    while stored < count:
        await asyncio.sleep(0.1)
        stored = await rt.db.fetchval("SELECT count(*) FROM carrier_ingest.tracking_events")
    return time.perf_counter() - started


def parser() -> argparse.ArgumentParser:
    """The command line: sizes, each defaulting to its environment variable."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--payloads",
        type=int,
        default=int(os.environ.get("WHARF_BENCH_PAYLOADS", "20000")),
        help="FedEx payloads to ingest (WHARF_BENCH_PAYLOADS; default %(default)d)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("WHARF_BENCH_EVENTS", "1")),
        help="scan events per payload (WHARF_BENCH_EVENTS; default %(default)d)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        default=os.environ.get("WHARF_BENCH_PROFILE"),
        help="write a cProfile of the service's stretch to FILE (WHARF_BENCH_PROFILE)",
    )
    return parser


async def main(args: argparse.Namespace) -> None:
    vhost = quote(f"wharf-bench-{uuid.uuid4().hex[:8]}", safe="")
    api = MANAGEMENT.rstrip("/") + "/api"
    name = f"wharf_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(DATABASE)
    database_url = urlunsplit(urlsplit(DATABASE)._replace(path=f"/{name}"))
    async with aiohttp.ClientSession() as http:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            (await http.put(f"{api}/vhosts/{vhost}")).raise_for_status()
            permissions = {"configure": ".*", "write": ".*", "read": ".*"}
            grant = await http.put(f"{api}/permissions/{vhost}/guest", json=permissions)
            grant.raise_for_status()
            amqp_url = f"amqp://{AMQP_HOST}/{vhost}"
            with tempfile.TemporaryDirectory() as storage:
                # The bare loop runs before and after the service, and the mean of
                # both is the yardstick, since other work on the machine comes and goes.
                before = await bare_loop(amqp_url, 128, args.payloads, "bench.bare")
                events, payloads, cpu = await service_run(args, amqp_url, database_url, storage)
                after = await bare_loop(amqp_url, 128, args.payloads, "bench.bare-after")
        finally:
            await http.delete(f"{api}/vhosts/{vhost}")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    cores = len(os.sched_getaffinity(0))
    print(f"payloads: {args.payloads}, events per payload: {args.events}, cores: {cores}")
    bare = (before[0] + after[0]) / 2
    bare_cpu = (before[1] + after[1]) / 2
    print(f"bare aio-pika consume+ack: {before[0]:,.0f} and {after[0]:,.0f} msg/s")
    print(f"carrier-ingest: {events:,.0f} events/s, {payloads:,.0f} payloads/s")
    # CPU per message hardly moves with the machine's load, so its ratio is
    # the steadier reading of the same comparison.
    print(
        f"SUMMARY events/s={events:.0f} (target 2000) payloads/s={payloads:.0f}"
        f" bare={bare:.0f} msg/s ratio={payloads / bare:.2f} (target 0.30)"
        f" cpu_ratio={bare_cpu / cpu:.2f}"
    )


if __name__ == "__main__":
    arguments = parser().parse_args()
    # SIGTERM stops the run as Ctrl-C does, so the cleanup above still runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        sys.exit("carrier-ingest bench: stopped before the end; its vhost and database are removed")
