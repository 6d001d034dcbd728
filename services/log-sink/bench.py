"""Benchmark of the log sink (a script, not a test).

Measures, in one run against the local RabbitMQ and PostgreSQL:

- the idle memory (RSS) of a sink process that is up and ready;
- records per second from the bus to committed rows: the queue is filled
  while the sink is stopped, then a sink process drains it;
- a raw COPY of the same records into the same table, for the ratio.

Sizes come from flags or, for each flag, its variable: --records
(WHARF_BENCH_RECORDS, default 300000) and --per-message
(WHARF_BENCH_PER_MESSAGE, default 500, what BusLogHandler ships at most).
The servers are WHARF_BENCH_DATABASE_URL, WHARF_TEST_MANAGEMENT_URL and
WHARF_TEST_AMQP_HOST. The database and virtual host it creates are removed at
the end, also when it is stopped with Ctrl-C or SIGTERM.

    .venv/bin/python services/log-sink/bench.py --records 300000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg

from wharf_common.bus import LOGS_EXCHANGE, Bus, command_queue_arguments
from wharf_common.envelope import Envelope
from wharf_common.logs import LOG_QUEUE
from wharf_log_sink.db import COLUMNS, SCHEMA, to_row

DATABASE_URL = os.environ.get(
    "WHARF_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MANAGEMENT_URL = os.environ.get("WHARF_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
AMQP_HOST = os.environ.get("WHARF_TEST_AMQP_HOST", "guest:guest@127.0.0.1:5672")
SERVICES = ("gateway", "auth", "documents", "carrier-ingest", "webhooks")


def _records(n: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(minutes=30)
    records = []
    for i in range(n):
        record: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "ts": (start + timedelta(microseconds=i * 5)).isoformat(),
            "level": "WARNING" if i % 20 == 0 else "INFO",
            "service": SERVICES[i % len(SERVICES)],
            "logger": "wharf_common.consumer",
            "message": f"handled shipment.update from wharf.carrier-ingest.events in {i % 97}.4 ms",
            "correlation_id": uuid.uuid4().hex,
            "tenant": f"tenant-{i % 40}",
            "message_id": str(uuid.uuid4()),
        }
        if i % 3 == 0:
            record["fields"] = {"attempt": 1, "queue": "wharf.carrier-ingest.events"}
        records.append(record)
    return records


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Sink:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wharf_log_sink",
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                            if response.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)


async def _fill_queue(amqp_url: str, records: list[dict[str, Any]], per_message: int) -> None:
    bus = Bus(amqp_url, service="bench")
    await bus.connect()
    try:
        channel = await bus.channel()
        queue = await channel.declare_queue(
            LOG_QUEUE, durable=True, arguments=command_queue_arguments()
        )
        await queue.bind(LOGS_EXCHANGE)
        exchange = await channel.get_exchange(LOGS_EXCHANGE)
        pending = []
        for i in range(0, len(records), per_message):
            envelope = Envelope(type="log.records", body=records[i : i + per_message])
            message = aio_pika.Message(body=envelope.encode(), delivery_mode=2)
            pending.append(exchange.publish(message, "bench"))
            if len(pending) >= 50:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await channel.close()
    finally:
        await bus.close()


async def _raw_copy(database_url: str, records: list[dict[str, Any]]) -> float:
    rows = [to_row(record) for record in records]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"TRUNCATE {SCHEMA}.records")
        await conn.execute("CHECKPOINT")
        started = time.perf_counter()
        for i in range(0, len(rows), 10_000):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "records", records=rows[i : i + 10_000], columns=COLUMNS, schema_name=SCHEMA
                )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _committed(http: aiohttp.ClientSession, port: int) -> int:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("wharf_log_sink_records_written_total "):
            return int(float(line.split()[1]))
    return 0


async def _drain_rate(port: int, total: int) -> float:
    """Records per second between the sink's first and last commit.

    Progress is the sink's own count of committed records, read from its
    metrics. PostgreSQL's insert counters would be cheaper still but lag: a
    backend that goes idle reports its last transactions only after about
    ten seconds, which could add that much to a run. The caller counts the
    stored rows once the sink says it is done.
    """
    first_seen: tuple[float, int] | None = None
    async with aiohttp.ClientSession() as http, asyncio.timeout(600):
        while True:
            done = await _committed(http, port)
            now = time.perf_counter()
            if first_seen is None and done > 0:
                first_seen = (now, done)
            if done >= total:
                assert first_seen is not None
                return (done - first_seen[1]) / max(now - first_seen[0], 1e-6)
            await asyncio.sleep(0.1)


def parser() -> argparse.ArgumentParser:
    """The command line: sizes, each defaulting to its environment variable."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records",
        type=int,
        default=int(os.environ.get("WHARF_BENCH_RECORDS", "300000")),
        help="log records to drain (WHARF_BENCH_RECORDS; default %(default)d)",
    )
    parser.add_argument(
        "--per-message",
        type=int,
        default=int(os.environ.get("WHARF_BENCH_PER_MESSAGE", "500")),
        help="records per bus message (WHARF_BENCH_PER_MESSAGE; default %(default)d)",
    )
    return parser


async def main(args: argparse.Namespace) -> None:
    total, per_message = args.records, args.per_message
    name = f"wharf_bench_{uuid.uuid4().hex[:8]}"
    vhost = f"wharf-bench-{uuid.uuid4().hex[:8]}"
    database_url = urlunsplit(urlsplit(DATABASE_URL)._replace(path=f"/{name}"))
    amqp_url = f"amqp://{AMQP_HOST}/{quote(vhost, safe='')}"
    api = f"{MANAGEMENT_URL.rstrip('/')}/api/vhosts/{quote(vhost, safe='')}"
    admin = await asyncpg.connect(DATABASE_URL)
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="wharf-bench-")
    env = {
        **os.environ,
        "WHARF_AMQP_URL": amqp_url,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_HTTP_PORT": str(port),
        "WHARF_HTTP_HOST": "127.0.0.1",
        "WHARF_STORAGE_URL": f"file://{workdir}",
        "WHARF_LOG_LEVEL": "WARNING",
    }
    sink = _Sink(env, port)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        async with aiohttp.ClientSession() as http:
            (await http.put(api)).raise_for_status()
            perms = f"{MANAGEMENT_URL.rstrip('/')}/api/permissions/{quote(vhost, safe='')}/guest"
            (
                await http.put(perms, json={"configure": ".*", "write": ".*", "read": ".*"})
            ).raise_for_status()
        print(f"generating {total} records, {per_message} per message", flush=True)
        records = _records(total)

        await sink.start()
        await asyncio.sleep(3)
        assert sink.process is not None
        idle_rss = _rss_mb(sink.process.pid)
        await sink.stop()
        print(f"idle sink RSS: {idle_rss:.1f} MB", flush=True)

        await _fill_queue(amqp_url, records, per_message)
        print("queue filled; starting the sink", flush=True)
        conn = await asyncpg.connect(database_url)
        await conn.execute("CHECKPOINT")
        await sink.start()
        sink_rate = await _drain_rate(port, total)
        stored = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.records")
        assert stored == total, f"{stored} rows stored, {total} published"
        await conn.close()
        await sink.stop()
        print(f"bus -> committed rows: {sink_rate:,.0f} records/s", flush=True)

        copy_rate = await _raw_copy(database_url, records)
        print(f"raw COPY of the same records: {copy_rate:,.0f} records/s", flush=True)
        ratio = sink_rate / copy_rate
        verdict = all((sink_rate >= 50_000, ratio >= 0.25, idle_rss <= 80))
        print(
            f"SUMMARY cores={os.cpu_count()} records={total} sink={sink_rate:,.0f}/s "
            f"raw_copy={copy_rate:,.0f}/s ratio={ratio:.2f} idle_rss={idle_rss:.1f}MB "
            f"targets(>=50k/s, >=0.25, <=80MB)={'met' if verdict else 'missed'}"
        )
    finally:
        await sink.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        async with aiohttp.ClientSession() as http:
            await http.delete(api)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    arguments = parser().parse_args()
    # SIGTERM stops the run as Ctrl-C does, so the cleanup above still runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        sys.exit("log-sink bench: stopped before the end; its vhost and database are removed")
