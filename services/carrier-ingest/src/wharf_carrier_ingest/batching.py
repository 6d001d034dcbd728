"""Work handed in one item at a time and done in batches by a few drainer tasks."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

Waiting = tuple[I, asyncio.Future[R]]


class BatchQueue(Generic[I, R]):
    """Items wait here, each with the future its caller awaits.

    Up to `drainers` tasks take what has queued up, at most `max_batch`
    items at a time, and hand it to `handle`, which settles the futures.
    Items whose caller has given up are left out of the batch.
    """

    def __init__(
        self,
        handle: Callable[[list[Waiting[I, R]]], Awaitable[None]],
        *,
        drainers: int,
        max_batch: int,
        name: str,
    ) -> None:
        self._handle = handle
        self._drainers = drainers
        self._max_batch = max_batch
        self._name = name
        self._queue: collections.deque[Waiting[I, R]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: I) -> R:
        """Queue `item` and wait for the batch it goes in to settle it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if len(self._tasks) < self._drainers:
            task = asyncio.create_task(self._drain(), name=self._name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def requeue(self, waiting: list[Waiting[I, R]]) -> None:
        """Put items back at the head of the queue, in their order."""
        self._queue.extendleft(reversed(waiting))

    async def close(self) -> None:
        """Stop the drainers; items still queued are cancelled."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            self._queue.popleft()[1].cancel()

    async def _drain(self) -> None:
        while self._queue:
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            batch = [(item, future) for item, future in batch if not future.done()]
            if batch:
                await self._handle(batch)
