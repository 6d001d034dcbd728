"""The wharf command end to end, as a user runs it, over fake services."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from wharf_common import rpc
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.queues import split_credentials

FAKE_SERVICE = Path(__file__).with_name("fake_service.py")
POSTGRES = "postgresql://postgres@127.0.0.1:5432"

Wharf = Callable[..., subprocess.CompletedProcess[str]]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """The name of a database that does not exist yet; dropped afterwards."""
    name = f"wharf_cli_test_{uuid.uuid4().hex[:8]}"
    yield name
    conn = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


@pytest.fixture
def env(tmp_path: Path, database: str) -> dict[str, str]:
    """The environment of a wharf command: a private home and two fake services.

    ``back`` runs 1 to 3 tasks.
    """
    services = tmp_path / "services.toml"
    command = json.dumps([sys.executable, str(FAKE_SERVICE)])
    services.write_text(
        f'[[service]]\nname = "front"\nshared_http_port = true\ncommand = {command}\n\n'
        f'[[service]]\nname = "back"\nmax_tasks = 3\ncommand = {command}\n'
    )
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WHARF_")}
    return clean | {
        "WHARF_HOME": str(tmp_path / "wharf"),
        "WHARF_SERVICES_FILE": str(services),
        "WHARF_DATABASE_URL": f"{POSTGRES}/{database}",
        "WHARF_STOP_TIMEOUT": "5",
        "WHARF_READY_TIMEOUT": "30",
    }


@pytest.fixture
def wharf(env: dict[str, str], tmp_path: Path) -> Iterator[Wharf]:
    """Run ``wharf ARGS``; a stack left running is brought down afterwards."""

    def run(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wharf_cli", *args],
            env=env | overrides,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    yield run
    run("down")


def _status(wharf: Wharf) -> dict[str, Any]:
    result = wharf("status", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _counts(status: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {s["name"]: (s["desired"], s["running"], s["ready"]) for s in status["services"]}


def test_up_detach_scale_status_down(wharf: Wharf, database: str, env: dict[str, str]) -> None:
    up = wharf("up", "--detach", "--tasks", "back=2")
    assert up.returncode == 0, up.stderr + up.stdout
    assert f"created database {database}" in up.stdout
    assert "back-2 ready" in up.stdout
    status = _status(wharf)
    assert _counts(status) == {"front": (1, 1, 1), "back": (2, 2, 2)}
    assert status["services"][0]["queue_depth"] == 0

    grown = wharf("scale", "back", "3")
    assert grown.returncode == 0, grown.stderr
    assert "back-3 ready" in grown.stdout
    assert _counts(_status(wharf))["back"] == (3, 3, 3)

    shrunk = wharf("scale", "back", "1")
    assert shrunk.returncode == 0, shrunk.stderr
    assert _counts(_status(wharf))["back"] == (1, 1, 1)
    logs = Path(env["WHARF_HOME"]) / "logs"
    assert "drained" in (logs / "back-3.log").read_text()
    assert "drained" in (logs / "back-2.log").read_text()

    refused = wharf("scale", "back", "0")
    assert refused.returncode == 2
    assert _counts(_status(wharf))["back"] == (1, 1, 1)
    forced = wharf("scale", "back", "0", "--force")
    assert forced.returncode == 0, forced.stderr
    assert _counts(_status(wharf))["back"] == (0, 0, 0)

    pids = [task["pid"] for service in status["services"] for task in service["tasks"]]
    down = wharf("down")
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert wharf("status").returncode == 1


def test_up_refuses_a_second_stack(wharf: Wharf) -> None:
    assert wharf("up", "--detach").returncode == 0

    again = wharf("up", "--detach")

    assert again.returncode == 1
    assert "already running" in again.stderr


def test_up_in_the_foreground_stops_cleanly_on_ctrl_c(env: dict[str, str], tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "wharf_cli", "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("running;"):
                break
        assert any("front-1 ready" in line for line in lines), lines

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, rest
    assert "stopped" in rest
    assert "front-1: stopped, exit code 0" in rest
    assert not (Path(env["WHARF_HOME"]) / "run" / "supervisor.json").exists()


def test_status_and_scale_without_a_stack_say_so(wharf: Wharf) -> None:
    status = wharf("status")
    scale = wharf("scale", "back", "2")

    assert status.returncode == 1
    assert "no Wharf stack is running" in status.stderr
    assert scale.returncode == 1
    assert "no Wharf stack is running" in scale.stderr


def test_scale_keeps_to_the_service_range_unless_forced(wharf: Wharf) -> None:
    above = wharf("scale", "back", "4")
    below = wharf("scale", "front", "0")
    forced = wharf("scale", "back", "4", "--force")
    negative = wharf("scale", "back", "-1", "--force")
    release = wharf("scale", "back", "--release", "--force")

    assert above.returncode == 2
    assert "back runs 1 to 3 tasks" in above.stderr
    assert "--force" in above.stderr
    assert below.returncode == 2
    assert "front runs 1 to 1000 tasks" in below.stderr
    # Forced past the range, it reaches the backend, which finds no stack.
    assert forced.returncode == 1
    assert "no Wharf stack is running" in forced.stderr
    assert negative.returncode == 2
    assert "cannot be negative" in negative.stderr
    assert release.returncode == 2


def test_a_services_table_with_a_bad_task_range_is_refused(wharf: Wharf, tmp_path: Path) -> None:
    table = tmp_path / "bad.toml"
    table.write_text('[[service]]\nname = "back"\nmin_tasks = 4\nmax_tasks = 2\n')

    result = wharf("status", WHARF_SERVICES_FILE=str(table))

    assert result.returncode == 2
    assert "service 'back': bad task range 4 to 2" in result.stderr


def test_down_without_a_stack_is_harmless(wharf: Wharf) -> None:
    down = wharf("down")

    assert down.returncode == 0
    assert "no Wharf stack is running" in down.stdout


def test_unknown_service_in_tasks_is_a_usage_error(wharf: Wharf) -> None:
    result = wharf("up", "--tasks", "nope=2")

    assert result.returncode == 2
    assert "unknown service 'nope'" in result.stderr


def test_missing_rabbitmq_says_how_to_get_it(wharf: Wharf) -> None:
    port = _closed_port()

    result = wharf("up", WHARF_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{port}/")

    assert result.returncode == 1
    assert f"RabbitMQ is not reachable at 127.0.0.1:{port} (WHARF_AMQP_URL)" in result.stderr
    assert "rabbitmq-server -detached" in result.stderr
    assert "apt-get install -y rabbitmq-server" in result.stderr
    assert "docker run" in result.stderr
    assert "Traceback" not in result.stderr
    assert "PostgreSQL" not in result.stderr


def test_missing_management_api_says_how_to_enable_it(wharf: Wharf) -> None:
    port = _closed_port()

    result = wharf("up", WHARF_MANAGEMENT_URL=f"http://guest:guest@127.0.0.1:{port}/")

    assert result.returncode == 1
    assert "management API is not reachable" in result.stderr
    assert "rabbitmq-plugins enable rabbitmq_management" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_postgresql_says_how_to_get_it(wharf: Wharf) -> None:
    port = _closed_port()

    result = wharf("up", WHARF_DATABASE_URL=f"postgresql://postgres:secret@127.0.0.1:{port}/w")

    assert result.returncode == 1
    assert f"PostgreSQL is not reachable at 127.0.0.1:{port} (WHARF_DATABASE_URL)" in result.stderr
    assert "pg_ctlcluster" in result.stderr
    assert "apt-get install -y postgresql" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_service_not_installed_is_named(wharf: Wharf, tmp_path: Path) -> None:
    services = tmp_path / "missing.toml"
    services.write_text('[[service]]\nname = "ghost"\nmodule = "wharf_no_such_service"\n')

    result = wharf("up", WHARF_SERVICES_FILE=str(services))

    assert result.returncode == 1
    assert "not installed or without a __main__: ghost (wharf_no_such_service)" in result.stderr


def test_package_without_main_is_named(wharf: Wharf, tmp_path: Path) -> None:
    package = tmp_path / "lib" / "wharf_library_only"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    services = tmp_path / "nomain.toml"
    services.write_text('[[service]]\nname = "lib"\nmodule = "wharf_library_only"\n')

    result = wharf("up", WHARF_SERVICES_FILE=str(services), PYTHONPATH=str(tmp_path / "lib"))

    assert result.returncode == 1
    assert "without a __main__: lib (wharf_library_only)" in result.stderr


def test_missing_vhost_is_named(wharf: Wharf) -> None:
    result = wharf("up", WHARF_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/wharf-no-such-vhost")

    assert result.returncode == 1
    assert "RabbitMQ has no virtual host 'wharf-no-such-vhost'" in result.stderr
    assert "rabbitmqctl add_vhost" in result.stderr


async def test_up_refuses_a_vhost_another_stack_serves(wharf: Wharf, amqp_url: str) -> None:
    bus = Bus(amqp_url, service="other-stack")
    await bus.connect()
    try:

        async def answer(request: Envelope) -> None:
            return None

        server = await rpc.serve(bus, "wharf.auth.rpc", answer)
        await _until_management_sees_a_consumer(amqp_url, "wharf.auth.rpc")
        result = await asyncio.to_thread(wharf, "up", WHARF_AMQP_URL=amqp_url)
        await server.stop()
    finally:
        await bus.close()

    assert result.returncode == 1
    assert "another Wharf stack already serves" in result.stderr
    assert "own virtual host" in result.stderr


async def _until_management_sees_a_consumer(amqp_url: str, queue: str) -> None:
    # The management API refreshes its statistics every few seconds.
    vhost = amqp_url.rsplit("/", 1)[1]
    base, headers = split_credentials("http://guest:guest@127.0.0.1:15672")
    url = f"{base}/api/queues/{vhost}/{queue}"
    async with aiohttp.ClientSession(headers=headers) as http, asyncio.timeout(30):
        while True:
            async with http.get(url) as response:
                if response.status == 200 and (await response.json()).get("consumers"):
                    return
            await asyncio.sleep(0.5)
