"""Running the local stack: the supervisor in the foreground, or detached in the background."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from wharf_cli.backend import ServiceState
from wharf_cli.home import Home
from wharf_cli.local import ControlServer, LocalBackend, NotRunningError
from wharf_cli.output import status_table
from wharf_cli.services import ServiceSpec
from wharf_cli.settings import CliSettings
from wharf_cli.supervisor import Supervisor, SupervisorOptions
from wharf_common.queues import queue_depths, vhost_of


async def stack_depths(settings: CliSettings, names: Sequence[str]) -> dict[str, int] | None:
    """Queue depth of each named service in the stack's virtual host; None when unknown."""
    return await queue_depths(settings.management_url, names, vhost_of(settings.amqp_url))


async def print_table(states: Sequence[ServiceState], settings: CliSettings) -> None:
    """Print the status table, with queue depths when the management API answers."""
    depths = await stack_depths(settings, [state.name for state in states])
    print(status_table(states, depths), flush=True)


async def run_foreground(
    settings: CliSettings,
    specs: Sequence[ServiceSpec],
    counts: Mapping[str, int],
    *,
    ready_timeout: float,
    announce: bool,
) -> int:
    """Supervise the stack until SIGINT, SIGTERM or ``POST /stop``; then drain it."""
    home = settings.wharf_home
    home.create()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    options = SupervisorOptions(stop_timeout=settings.stop_timeout)
    supervisor = Supervisor(specs, home, counts=counts, options=options)
    server = ControlServer(supervisor, home, stop)
    try:
        await server.start()
        await supervisor.start()
        if announce:
            await _announce(supervisor, settings, stop, ready_timeout)
        await stop.wait()
        if announce:
            print(f"stopping: draining tasks (up to {settings.stop_timeout:g}s)", flush=True)
        await supervisor.stop()
    finally:
        await server.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if announce:
        print("stopped", flush=True)
    return 0


async def _announce(
    supervisor: Supervisor, settings: CliSettings, stop: asyncio.Event, ready_timeout: float
) -> None:
    settled = asyncio.create_task(supervisor.wait_settled())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait(
        (settled, stopped), timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
    )
    for task in (settled, stopped):
        task.cancel()
    if stop.is_set():
        return
    await print_table(supervisor.status(), settings)
    if not supervisor.settled():
        logs = settings.wharf_home.logs
        print(f"not every task is ready after {ready_timeout:g}s; still trying. Logs: {logs}")
    print("running; Ctrl-C stops the stack", flush=True)


def _spawn_supervisor(home: Home, counts: Mapping[str, int]) -> subprocess.Popen[bytes]:
    # A plain Popen, not asyncio's: the child must outlive this event loop.
    argv = [sys.executable, "-m", "wharf_cli", "up", "--supervisor"]
    argv += [f"--tasks={name}={count}" for name, count in counts.items()]
    env = dict(os.environ, WHARF_HOME=str(home.root))
    with home.supervisor_log.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def run_detached(
    settings: CliSettings, counts: Mapping[str, int], *, ready_timeout: float
) -> int:
    """Start the supervisor in the background and return once every task is ready."""
    home = settings.wharf_home
    home.create()
    child = _spawn_supervisor(home, counts)
    backend = LocalBackend(home)
    deadline = time.monotonic() + ready_timeout
    states: list[ServiceState] = []
    try:
        while time.monotonic() < deadline:
            if child.poll() is not None:
                code = child.returncode
                print(f"the supervisor exited ({code}); see {home.supervisor_log}", file=sys.stderr)
                return 1
            with contextlib.suppress(NotRunningError):
                states = await backend.status()
                if states and all(state.settled for state in states):
                    break
            await asyncio.sleep(0.2)
    finally:
        await backend.close()

    await print_table(states, settings)
    if not states or not all(state.settled for state in states):
        print(
            f"not every task is ready after {ready_timeout:g}s; the stack keeps trying in the"
            f" background (wharf status; wharf down). Logs: {home.logs}",
            file=sys.stderr,
        )
        return 1
    print(f"running in the background (supervisor pid {child.pid}); wharf down stops it")
    return 0
