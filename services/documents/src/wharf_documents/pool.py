"""A bounded pool of worker processes with a hard timeout per task, usable from asyncio."""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import resource
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from wharf_documents.errors import RenderDeadlineExceeded, RendererClosed, WorkerCrashed

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota if one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_cpu_quota() -> float | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            quota = _cgroup_v2_quota(line[3:])
            if quota is not None:
                return quota
    return _cgroup_v1_quota()


def _cgroup_v2_quota(path: str) -> float | None:
    # The tightest cpu.max between this cgroup and the root is the one in force.
    quotas: list[float] = []
    directory = _CGROUP_ROOT / path.lstrip("/")
    while True:
        quota = _read_cpu_max(directory / "cpu.max")
        if quota is not None:
            quotas.append(quota)
        if directory == _CGROUP_ROOT or _CGROUP_ROOT not in directory.parents:
            break
        directory = directory.parent
    return min(quotas) if quotas else None


def _read_cpu_max(path: Path) -> float | None:
    try:
        limit, _, period = path.read_text().strip().partition(" ")
    except OSError:
        return None
    if limit == "max" or not period:
        return None
    return int(limit) / int(period)


def _cgroup_v1_quota() -> float | None:
    base = _CGROUP_ROOT / "cpu"
    try:
        quota = int((base / "cpu.cfs_quota_us").read_text())
        period = int((base / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def limit_memory(max_bytes: int) -> None:
    """Cap this process's data segment (heap and private mappings) at `max_bytes`.

    Past it, allocations fail: Python raises MemoryError, and native code
    either reports the failure or aborts the process. Unlike the address
    space, the data segment leaves out mapped libraries and font files, so
    the cap follows the memory a render really uses.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))


class WorkerPool:
    """Run picklable functions in worker processes, one task per worker at a time.

    Each task has a hard timeout: when it expires the worker is killed, the
    task fails with RenderDeadlineExceeded and a new worker takes its place. A
    worker that dies fails only the task it was running (WorkerCrashed).
    Workers are replaced after `max_tasks_per_worker` tasks to bound their
    memory, and each may use at most `max_memory_bytes` (0: no cap; see
    limit_memory). Tasks wait in asyncio for a free worker, so cancelling a
    waiting task costs nothing and a task's timeout starts when it starts.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        max_tasks_per_worker: int = 0,
        max_memory_bytes: int = 0,
        preload: Sequence[str] = (),
    ) -> None:
        self.workers = workers or available_cpus()
        self.max_tasks_per_worker = max_tasks_per_worker
        self.max_memory_bytes = max_memory_bytes
        self._preload = list(preload)
        self._slots = asyncio.Semaphore(self.workers)
        self._pool: ProcessPool | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    def _ensure_pool(self) -> ProcessPool:
        if self._pool is None or not self._pool.active:
            if self._pool is not None:
                logger.warning("worker pool broke; starting a new one")
                self._pool.stop()  # type: ignore[no-untyped-call]
            # Forked children of a threaded asyncio process are unsafe: start
            # workers from a clean server process that has imported the renderer.
            context = multiprocessing.get_context("forkserver")
            if self._preload:
                context.set_forkserver_preload(self._preload)
            self._pool = ProcessPool(
                max_workers=self.workers,
                max_tasks=self.max_tasks_per_worker,
                context=context,
                initializer=limit_memory if self.max_memory_bytes else None,
                initargs=(self.max_memory_bytes,),
            )
            logger.debug("started %d workers", self.workers)
        return self._pool

    async def run(self, function: Callable[..., T], *args: Any, budget: float | None = None) -> T:
        """Run `function(*args)` in a worker; kill it and fail after `budget` seconds."""
        if self._closed:
            raise RendererClosed("the worker pool is closed")
        async with self._slots:
            if self._closed:
                raise RendererClosed("the worker pool is closed")
            future = self._ensure_pool().schedule(function, args=args, timeout=budget)
            try:
                return await asyncio.wrap_future(future)
            except TimeoutError as exc:
                if exc.args[:1] != ("Task timeout",):
                    raise
                raise RenderDeadlineExceeded(
                    f"stopped after {budget:g} s; the worker was replaced"
                ) from None
            except ProcessExpired as exc:
                raise WorkerCrashed(f"the worker died (exit code {exc.exitcode})") from None
            except BrokenProcessPool as exc:
                raise WorkerCrashed(f"the worker pool broke: {exc}") from None

    async def close(self, grace: float | None = 30.0) -> None:
        """Refuse new tasks, give running ones `grace` seconds, then stop the workers."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.close()  # type: ignore[no-untyped-call]
        try:
            await asyncio.to_thread(pool.join, grace)
        except TimeoutError:
            logger.warning("workers still busy after %s s; stopping them", grace)
            pool.stop()  # type: ignore[no-untyped-call]
            await asyncio.to_thread(pool.join)
