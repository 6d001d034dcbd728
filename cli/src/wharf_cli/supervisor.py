"""The local supervisor: runs every service as processes, a desired task count each.

One reconcile loop owns all state. Each pass starts missing tasks, drains
surplus ones (newest first), restarts crashed ones once their back-off has
passed, and probes every task's /readyz on its own WHARF_OPS_PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from wharf_cli.backend import ServiceState, TaskPhase, TaskState
from wharf_cli.home import Home
from wharf_cli.services import ServiceSpec, service_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisorOptions:
    """Timing of the supervisor; tests shorten it."""

    stop_timeout: float = 30.0
    # A draining task gets this long beyond its own stop timeout before it is killed.
    kill_grace: float = 5.0
    probe_interval: float = 1.0
    probe_timeout: float = 1.0
    backoff_base: float = 1.0
    backoff_max: float = 30.0


@dataclass(eq=False)
class _Task:
    spec: ServiceSpec
    slot: int
    ops_port: int
    http_port: int | None
    phase: TaskPhase = "starting"
    ready: bool = False
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    failures: int = 0
    retry_at: float = 0.0
    last_exit: int | None = None
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.spec.name}-{self.slot}"

    @property
    def active(self) -> bool:
        return self.phase != "stopping"

    def state(self) -> TaskState:
        return TaskState(
            name=self.name,
            phase=self.phase,
            ready=self.ready,
            pid=self.process.pid if self.process and self.phase != "backoff" else None,
            ops_port=self.ops_port,
            http_port=self.http_port,
            restarts=self.restarts,
            exit_code=self.last_exit,
        )


class Supervisor:
    """Keeps the running tasks of each service equal to its desired count."""

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        home: Home,
        *,
        counts: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        options: SupervisorOptions | None = None,
    ) -> None:
        self._specs = service_table(specs)
        self._home = home
        self._env = dict(os.environ if env is None else env)
        self._cwd = cwd or Path.cwd()
        self._options = options or SupervisorOptions()
        self._desired = {name: spec.default_tasks for name, spec in self._specs.items()}
        self._tasks: dict[str, list[_Task]] = {name: [] for name in self._specs}
        self._ports: set[int] = set()
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closing = False
        self._session: aiohttp.ClientSession | None = None
        for name, count in (counts or {}).items():
            self._check(name, count)
            self._desired[name] = count

    @property
    def services(self) -> list[str]:
        """Names of the services this supervisor runs, in table order."""
        return list(self._specs)

    def desired(self) -> dict[str, int]:
        """The desired task count of each service."""
        return dict(self._desired)

    def set_desired(self, service: str, count: int) -> ServiceState:
        """Change a service's task count; the reconcile loop does the rest."""
        self._check(service, count)
        self._desired[service] = count
        logger.info("%s: desired tasks set to %d", service, count)
        self._wake.set()
        return self._service_state(service)

    def status(self) -> list[ServiceState]:
        """Desired count and every task of each service."""
        return [self._service_state(name) for name in self._specs]

    def settled(self) -> bool:
        """Every service has exactly its desired tasks, all ready."""
        return all(state.settled for state in self.status())

    async def start(self) -> None:
        """Start the reconcile loop, which starts the tasks."""
        self._home.create()
        timeout = aiohttp.ClientTimeout(total=self._options.probe_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._loop_task = asyncio.create_task(self._run(), name="wharf-reconcile")

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate` holds; it is checked after every change and probe."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def wait_settled(self) -> None:
        """Wait until every service has exactly its desired tasks, all ready."""
        await self.wait_for(self.settled)

    async def stop(self) -> None:
        """Drain every task (SIGTERM, then SIGKILL after the stop timeout) and stop."""
        self._stopping = True
        for name in self._desired:
            self._desired[name] = 0
        self._wake.set()
        await self.wait_for(lambda: not any(self._tasks.values()))
        self._closing = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._session is not None:
            await self._session.close()
        logger.info("all tasks stopped")

    def _check(self, service: str, count: int) -> None:
        if service not in self._specs:
            known = ", ".join(self._specs)
            raise ValueError(f"unknown service {service!r} (known: {known})")
        if count < 0:
            raise ValueError(f"task count must be 0 or more, not {count}")
        if self._stopping:
            raise ValueError("the stack is stopping")

    def _service_state(self, name: str) -> ServiceState:
        tasks = sorted(self._tasks[name], key=lambda task: task.slot)
        return ServiceState(
            name=name, desired=self._desired[name], tasks=[task.state() for task in tasks]
        )

    async def _run(self) -> None:
        # Ended by `_closing`, not by cancellation: Python 3.11's wait_for can swallow
        # a cancel that arrives just as the wake-up does.
        while not self._closing:
            self._wake.clear()
            try:
                await self._reconcile()
                await self._probe()
            except Exception:
                logger.exception("reconcile pass failed")
            await self._notify()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._options.probe_interval):
                    await self._wake.wait()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _reconcile(self) -> None:
        now = time.monotonic()
        for name, spec in self._specs.items():
            tasks = self._tasks[name]
            active = [task for task in tasks if task.active]
            missing = self._desired[name] - len(active)
            if missing < 0:
                newest = sorted(active, key=lambda task: task.slot, reverse=True)
                for task in newest[:-missing]:
                    self._terminate(task)
            for _ in range(missing):
                await self._spawn(self._new_task(spec))
            for task in tasks:
                if task.phase == "backoff" and task.retry_at <= now:
                    task.restarts += 1
                    self._refresh_ports(task)
                    await self._spawn(task)

    def _new_task(self, spec: ServiceSpec) -> _Task:
        tasks = self._tasks[spec.name]
        used = {task.slot for task in tasks}
        slot = next(n for n in range(1, len(tasks) + 2) if n not in used)
        http_port = None if spec.shared_http_port else self._free_port()
        task = _Task(spec=spec, slot=slot, ops_port=self._free_port(), http_port=http_port)
        tasks.append(task)
        return task

    def _free_port(self) -> int:
        while True:
            port = _bind_port(0)
            if port not in self._ports:
                self._ports.add(port)
                return port

    def _refresh_ports(self, task: _Task) -> None:
        # Another program may have taken a crashed task's port meanwhile.
        if _bind_port(task.ops_port) == 0:
            self._ports.discard(task.ops_port)
            task.ops_port = self._free_port()
        if task.http_port is not None and _bind_port(task.http_port) == 0:
            self._ports.discard(task.http_port)
            task.http_port = self._free_port()

    def _task_env(self, task: _Task) -> dict[str, str]:
        env = dict(self._env)
        env["WHARF_OPS_PORT"] = str(task.ops_port)
        if task.http_port is not None:
            env["WHARF_HTTP_PORT"] = str(task.http_port)
        env["WHARF_HTTP_REUSE_PORT"] = "true" if task.spec.shared_http_port else "false"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def _spawn(self, task: _Task) -> None:
        log_path = self._home.task_log(task.name)
        task.phase = "starting"
        task.ready = False
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- wharf: {task.name} starting at {stamp}\n".encode())
            log.flush()
            try:
                task.process = await asyncio.create_subprocess_exec(
                    *task.spec.argv(),
                    env=self._task_env(task),
                    cwd=self._cwd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    # Ctrl-C reaches the supervisor only; it stops tasks in order.
                    start_new_session=True,
                )
            except OSError as exc:
                logger.warning("%s: cannot start: %s", task.name, exc)
                self._backoff(task, None)
                return
        logger.info("%s: started, pid %d", task.name, task.process.pid)
        task.watcher = asyncio.create_task(self._watch(task, task.process))

    async def _watch(self, task: _Task, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        # Whatever the task left behind in its process group (workers) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        task.last_exit = code
        task.ready = False
        if task.phase == "stopping":
            logger.info("%s: stopped, exit code %d", task.name, code)
            self._remove(task)
        else:
            self._backoff(task, code)
        self._wake.set()
        await self._notify()

    def _backoff(self, task: _Task, code: int | None) -> None:
        task.failures += 1
        options = self._options
        delay = min(options.backoff_base * 2 ** (task.failures - 1), options.backoff_max)
        task.phase = "backoff"
        task.retry_at = time.monotonic() + delay
        logger.warning("%s: exited (code %s); restarting in %.1fs", task.name, code, delay)

    def _terminate(self, task: _Task) -> None:
        if task.phase == "backoff" or task.process is None or task.process.returncode is not None:
            task.phase = "stopping"
            self._remove(task)
            return
        task.phase = "stopping"
        task.ready = False
        logger.info("%s: draining (SIGTERM)", task.name)
        with contextlib.suppress(ProcessLookupError):
            task.process.send_signal(signal.SIGTERM)
        deadline = self._options.stop_timeout + self._options.kill_grace
        asyncio.get_running_loop().call_later(deadline, self._kill, task)

    def _kill(self, task: _Task) -> None:
        process = task.process
        if process is None or process.returncode is not None:
            return
        logger.warning("%s: still running after its stop timeout; killing it", task.name)
        # The whole process group, so that a task's own workers go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def _remove(self, task: _Task) -> None:
        tasks = self._tasks[task.spec.name]
        if task in tasks:
            tasks.remove(task)
        self._ports.discard(task.ops_port)
        if task.http_port is not None:
            self._ports.discard(task.http_port)

    async def _probe(self) -> None:
        probes = [
            self._probe_one(task)
            for tasks in self._tasks.values()
            for task in tasks
            if task.phase in ("starting", "running")
        ]
        await asyncio.gather(*probes)

    async def _probe_one(self, task: _Task) -> None:
        assert self._session is not None
        url = f"http://127.0.0.1:{task.ops_port}/readyz"
        try:
            async with self._session.get(url) as response:
                ready = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ready = False
        if task.phase not in ("starting", "running"):
            return
        if ready and not task.ready:
            logger.info("%s: ready", task.name)
        task.ready = ready
        if ready:
            task.phase = "running"
            task.failures = 0


def _bind_port(port: int) -> int:
    """Bind `port` (0: any) the way a server would; the bound port, or 0 when taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return 0
        bound: int = sock.getsockname()[1]
        return bound
