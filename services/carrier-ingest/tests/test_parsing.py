from __future__ import annotations

import asyncio
import threading
import time

import pytest

from wharf_carrier_ingest.parsing import AdapterRunner, AdapterTimeout


async def test_results_and_errors_reach_their_own_callers() -> None:
    runner: AdapterRunner[int] = AdapterRunner(2, lambda: 5.0)

    def fail() -> int:
        raise ValueError("bad payload")

    calls = [lambda n=n: n * n for n in range(500)]
    results = await asyncio.gather(
        *(runner.run(call) for call in calls), runner.run(fail), return_exceptions=True
    )
    await runner.close()
    assert results[:500] == [n * n for n in range(500)]
    assert isinstance(results[500], ValueError)


async def test_a_hung_call_fails_alone_and_the_calls_behind_it_still_run() -> None:
    release = threading.Event()
    runner: AdapterRunner[str] = AdapterRunner(1, lambda: 0.2)

    def hang() -> str:
        release.wait(10)
        return "too late"

    try:
        started = time.monotonic()
        before = [runner.run(lambda n=n: f"before {n}") for n in range(3)]
        hung = runner.run(hang)
        after = [runner.run(lambda n=n: f"after {n}") for n in range(3)]
        results = await asyncio.gather(*before, hung, *after, return_exceptions=True)
        assert results[:3] == ["before 0", "before 1", "before 2"]
        assert isinstance(results[3], AdapterTimeout)
        assert results[4:] == ["after 0", "after 1", "after 2"]
        assert time.monotonic() - started < 5
        # The runner goes on with fresh threads while the hung one is held.
        assert await runner.run(lambda: "later") == "later"
    finally:
        release.set()
        await runner.close()


async def test_closing_cancels_calls_still_waiting() -> None:
    release = threading.Event()
    runner: AdapterRunner[str] = AdapterRunner(1, lambda: 30.0)

    def hold() -> str:
        release.wait(10)
        return "held"

    first = asyncio.ensure_future(runner.run(hold))
    second = asyncio.ensure_future(runner.run(lambda: "queued"))
    await asyncio.sleep(0.05)
    await runner.close()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
