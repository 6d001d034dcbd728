"""Admission to the render workers: single documents go before waiting batch items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class RenderGate:
    """Hands out the `slots` render workers, at most `batch_slots` of them to batch items.

    A batch item is admitted only while no single document waits, so a
    single document waits at most for the first batch render in progress
    to end; with `batch_slots` below `slots` it does not wait at all.
    """

    def __init__(self, slots: int, batch_slots: int) -> None:
        self._free = slots
        self._batch_free = min(slots, batch_slots)
        self._singles_waiting = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self, *, batch: bool) -> AsyncIterator[None]:
        """Hold one worker slot while the block runs."""
        async with self._changed:
            if batch:
                await self._changed.wait_for(self._batch_may_start)
                self._batch_free -= 1
            else:
                self._singles_waiting += 1
                try:
                    await self._changed.wait_for(lambda: self._free > 0)
                finally:
                    self._singles_waiting -= 1
                    self._changed.notify_all()
            self._free -= 1
        try:
            yield
        finally:
            async with self._changed:
                self._free += 1
                if batch:
                    self._batch_free += 1
                self._changed.notify_all()

    def _batch_may_start(self) -> bool:
        return self._free > 0 and self._batch_free > 0 and self._singles_waiting == 0
