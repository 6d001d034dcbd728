from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.runtime import Runtime, ServiceSpec
from wharf_common.settings import ServiceSettings
from wharf_common.testing import running

HERE = Path(__file__).parent
QUEUE = "wharf.sample.work"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Task:
    """One task of the sample service, run as a real process."""

    def __init__(
        self, amqp_url: str, database_url: str, tmp: Path, port: int | None = None, **env: str
    ) -> None:
        self.port = port or free_port()
        # Tasks sharing an HTTP port are told apart by their ops ports.
        self.probe_port = int(env.get("WHARF_OPS_PORT", self.port))
        self.log = open(tmp / f"task-{self.probe_port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sample_service"],
            cwd=HERE,
            env={
                **os.environ,
                "PYTHONPATH": str(HERE),
                "WHARF_AMQP_URL": amqp_url,
                "WHARF_DATABASE_URL": database_url,
                "WHARF_HTTP_HOST": "127.0.0.1",
                "WHARF_HTTP_PORT": str(self.port),
                "WHARF_STORAGE_URL": f"file://{tmp}/objects",
                "WHARF_LOG_TO_BUS": "false",
                **env,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
            while True:
                assert self.process.poll() is None, "the task exited before it was ready"
                try:
                    url = f"http://127.0.0.1:{self.probe_port}/readyz"
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def start_task(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Callable[..., Task]]:
    tasks: list[Task] = []

    def start(port: int | None = None, **env: str) -> Task:
        task = Task(amqp_url, database_url, tmp_path, port, **env)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.stop()


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    yield bus
    await bus.close()


async def effects(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT n) FROM sample.effects")
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def wait_for_effects(database_url: str, expected: int, timeout: float = 100.0) -> None:
    async with asyncio.timeout(timeout):
        while (await effects(database_url))[1] < expected:
            await asyncio.sleep(0.2)


async def test_killed_consumer_redelivers_and_effect_happens_once(
    start_task: Callable[..., Task], bus: Bus, database_url: str
) -> None:
    doomed = start_task(WHARF_CONCURRENCY="4")
    survivor = start_task(WHARF_CONCURRENCY="4")
    await asyncio.gather(doomed.wait_ready(), survivor.wait_ready())

    total = 60
    for n in range(total):
        await bus.send(QUEUE, Envelope(type="sample.work", body={"n": n, "sleep": 0.1}))
    await asyncio.sleep(0.6)
    doomed.process.send_signal(signal.SIGKILL)

    await wait_for_effects(database_url, total)
    assert await effects(database_url) == (total, total)


async def test_sigterm_under_load_finishes_in_flight_work_and_exits_zero(
    start_task: Callable[..., Task], bus: Bus, database_url: str
) -> None:
    task = start_task(WHARF_CONCURRENCY="4", WHARF_STOP_TIMEOUT="10")
    await task.wait_ready()

    total = 80
    for n in range(total):
        await bus.send(QUEUE, Envelope(type="sample.work", body={"n": n, "sleep": 0.05}))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    task.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(task.process.wait, 15)

    assert code == 0
    assert time.monotonic() - started < 10
    successor = start_task(WHARF_CONCURRENCY="4")
    await successor.wait_ready()
    await wait_for_effects(database_url, total)
    assert await effects(database_url) == (total, total)


async def test_start_line_has_version_and_no_secrets(
    start_task: Callable[..., Task], tmp_path: Path
) -> None:
    task = start_task(WHARF_STORAGE_SIGNING_KEY="very-secret-value")
    await task.wait_ready()
    task.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(task.process.wait, 15)

    output = await asyncio.to_thread(Path(task.log.name).read_text)
    assert "starting sample 0" in output
    assert "very-secret-value" not in output


async def test_a_task_whose_port_is_taken_exits_saying_so(
    start_task: Callable[..., Task],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        task = start_task(taken.getsockname()[1])
        code = await asyncio.to_thread(task.process.wait, 60)

    output = await asyncio.to_thread(Path(task.log.name).read_text)
    assert code == 1
    assert f"port {task.port} (WHARF_HTTP_PORT) is in use by another process" in output


async def test_tasks_share_a_port_only_when_told_to(start_task: Callable[..., Task]) -> None:
    port = free_port()
    shared = {"port": port, "WHARF_HTTP_REUSE_PORT": "true"}
    first = start_task(**shared, WHARF_OPS_PORT=str(free_port()))
    second = start_task(**shared, WHARF_OPS_PORT=str(free_port()))
    await asyncio.gather(first.wait_ready(), second.wait_ready())

    stray = start_task(port, WHARF_OPS_PORT=str(free_port()))
    code = await asyncio.to_thread(stray.process.wait, 60)

    assert code == 1
    assert first.process.poll() is None and second.process.poll() is None


async def test_an_over_long_header_is_refused_without_logging_its_bytes(
    start_task: Callable[..., Task],
) -> None:
    task = start_task()
    await task.wait_ready()
    secret = b"wk_marker-secret-0123456789"
    header = b"X-API-Key: " + secret + b" " * 9000 + b"x"
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"

    reader, writer = await asyncio.open_connection("127.0.0.1", task.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    task.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(task.process.wait, 15)

    assert answer.startswith(b"HTTP/1.0 400")
    output = await asyncio.to_thread(Path(task.log.name).read_text)
    assert "refused a malformed HTTP request: LineTooLong (status 400)" in output
    assert secret.decode() not in output


async def test_a_started_service_freezes_its_startup_heap_until_it_closes(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    async def setup(rt: Runtime) -> None:
        pass

    spec = ServiceSpec(name="frozen", version="0", setup=setup, ship_logs=False)
    settings = ServiceSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"file://{tmp_path}/objects",
        http_port=0,
        gc_threshold=12_345,
    )
    before = gc.get_threshold()
    try:
        async with running(spec, settings):
            assert gc.get_threshold()[0] == 12_345
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)
