"""Running carrier adapters off the event loop, many payloads per hand-over.

An adapter is ordinary Python that might loop forever on a payload nobody
foresaw, so it runs in a worker thread under a deadline. Handing each payload
to a thread on its own cost more CPU than parsing it: every hand-over wakes
the thread, passes the GIL back and forth and wakes the loop again. So the
payloads that queue up while a batch runs go to the thread together, and
the thread reports which one it is on. A payload past its deadline fails on
its own; the thread is left to finish it (a thread cannot be killed), and the
payloads queued behind it go to a fresh thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .batching import BatchQueue, Waiting

T = TypeVar("T")


class AdapterTimeout(Exception):
    """An adapter ran past its deadline on one payload."""


@dataclass
class _Batch(Generic[T]):
    calls: list[Callable[[], T]]
    outcomes: list[tuple[bool, T | BaseException]] = field(default_factory=list)
    current: tuple[int, float] | None = None
    """Index of the call in progress and when it started (monotonic)."""
    abandoned: bool = False


def _run(batch: _Batch[T]) -> None:
    # In the worker thread. Each field is set in one assignment, which the
    # event loop reads whole.
    for index, call in enumerate(batch.calls):
        if batch.abandoned:
            return
        batch.current = (index, time.monotonic())
        try:
            outcome: tuple[bool, T | BaseException] = (True, call())
        except Exception as exc:
            outcome = (False, exc)
        batch.outcomes.append(outcome)


_Waiting = Waiting[Callable[[], T], T]


class AdapterRunner(Generic[T]):
    """Runs calls in `threads` worker threads in batches, each call within `timeout()` seconds.

    `timeout` is read for every batch, so a changed setting applies at once.
    """

    def __init__(self, threads: int, timeout: Callable[[], float], *, max_batch: int = 256) -> None:
        self._threads = threads
        self._timeout = timeout
        self._batches: BatchQueue[Callable[[], T], T] = BatchQueue(
            self._run_batch, drainers=threads, max_batch=max_batch, name="carrier-parse"
        )
        self._executor = self._new_executor()

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self._threads, thread_name_prefix="carrier-parse")

    async def run(self, call: Callable[[], T]) -> T:
        """The call's result or exception; AdapterTimeout once it has run past the deadline."""
        return await self._batches.submit(call)

    async def close(self) -> None:
        """Stop handing out work; calls still queued are cancelled."""
        await self._batches.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run_batch(self, waiting: list[_Waiting[T]]) -> None:
        batch = _Batch([call for call, _ in waiting])
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, _run, batch)
        try:
            while True:
                timeout = self._timeout()
                current = batch.current
                left = timeout if current is None else current[1] + timeout - time.monotonic()
                finished, _ = await asyncio.wait({done}, timeout=max(left, 0.0))
                if finished:
                    self._settle(waiting, batch.outcomes)
                    return
                current = batch.current
                if current is not None and time.monotonic() - current[1] >= timeout:
                    self._abandon(waiting, batch, current[0], timeout)
                    return
        except asyncio.CancelledError:
            batch.abandoned = True
            for _, future in waiting:
                future.cancel()
            raise

    def _abandon(
        self, waiting: list[_Waiting[T]], batch: _Batch[T], hung: int, timeout: float
    ) -> None:
        batch.abandoned = True
        # The old pool keeps the hung thread until it returns; new batches
        # get threads of their own.
        self._executor.shutdown(wait=False, cancel_futures=False)
        self._executor = self._new_executor()
        outcomes = list(batch.outcomes)
        self._settle(waiting[: len(outcomes)], outcomes)
        rest = len(outcomes)
        if rest <= hung:
            future = waiting[hung][1]
            if not future.done():
                future.set_exception(AdapterTimeout(f"deadline of {timeout:g} s exceeded"))
            rest = hung + 1
        # The calls behind the hung one go first in line again.
        self._batches.requeue(waiting[rest:])

    @staticmethod
    def _settle(waiting: list[_Waiting[T]], outcomes: list[tuple[bool, T | BaseException]]) -> None:
        for (_, future), (ok, value) in zip(waiting, outcomes, strict=False):
            if future.done():
                continue
            if ok:
                future.set_result(value)  # type: ignore[arg-type]
            else:
                assert isinstance(value, BaseException)
                future.set_exception(value)
