from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wharf_common.deadlines import deadline_in
from wharf_documents import examples
from wharf_documents import pool as pool_module
from wharf_documents.errors import RenderError
from wharf_documents.pool import WorkerPool, available_cpus
from wharf_documents.render import Renderer, RenderRequest
from wharf_documents.settings import DocumentsSettings

NEVER_ENDS = "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"


@pytest.fixture
async def small_renderer() -> AsyncIterator[Renderer]:
    settings = DocumentsSettings(render_workers=2, render_timeout=30)
    async with Renderer(settings) as renderer:
        yield renderer


def _label() -> RenderRequest:
    return RenderRequest(
        examples.template("shipping_label"), examples.sample_data("shipping_label")
    )


async def test_timeout_kills_the_worker_and_the_next_render_works() -> None:
    settings = DocumentsSettings(render_workers=1, render_timeout=1.5)
    async with Renderer(settings) as renderer:
        before = await renderer.pool.run(os.getpid)
        started = time.monotonic()
        with pytest.raises(RenderError) as failure:
            await renderer.render(RenderRequest(NEVER_ENDS))
        elapsed = time.monotonic() - started
        result = await renderer.render(RenderRequest("<p>next</p>"))
        after = await renderer.pool.run(os.getpid)

    assert failure.value.reason == "deadline_exceeded"
    assert elapsed < 6
    assert result.pages == 1
    assert before != after, "the timed-out worker should have been replaced"


async def test_job_deadline_shortens_the_render_budget(small_renderer: Renderer) -> None:
    request = RenderRequest(NEVER_ENDS, deadline=deadline_in(0.5))
    started = time.monotonic()

    with pytest.raises(RenderError) as failure:
        await small_renderer.render(request)

    assert failure.value.reason == "deadline_exceeded"
    assert time.monotonic() - started < 5


async def test_a_crashing_render_fails_only_itself(small_renderer: Renderer) -> None:
    crash = small_renderer.pool.run(os.abort)
    exit_ = small_renderer.pool.run(os._exit, 3)
    renders = [small_renderer.render(_label()) for _ in range(3)]

    outcomes = await asyncio.gather(crash, exit_, *renders, return_exceptions=True)

    crashed, exited, *rendered = outcomes
    assert isinstance(crashed, RenderError) and crashed.reason == "worker_crashed"
    assert isinstance(exited, RenderError) and exited.reason == "worker_crashed"
    assert all(
        not isinstance(result, BaseException) and result.pages == 1 for result in rendered
    ), [repr(result) for result in rendered if isinstance(result, BaseException)]
    assert (await small_renderer.render(_label())).pages == 1


async def test_workers_are_recycled_after_n_tasks() -> None:
    pool = WorkerPool(1, max_tasks_per_worker=2)
    try:
        pids = [await pool.run(os.getpid) for _ in range(6)]
    finally:
        await pool.close()

    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert len(set(pids)) == 3


async def test_workers_run_under_their_memory_cap() -> None:
    capped = WorkerPool(1, max_memory_bytes=256 * 1024 * 1024)
    uncapped = WorkerPool(1)
    try:
        limits = await capped.run(resource.getrlimit, resource.RLIMIT_DATA)
        default = await uncapped.run(resource.getrlimit, resource.RLIMIT_DATA)
    finally:
        await capped.close()
        await uncapped.close()

    assert limits == (256 * 1024 * 1024, 256 * 1024 * 1024)
    assert default == resource.getrlimit(resource.RLIMIT_DATA)


async def test_cancelled_render_frees_its_worker() -> None:
    pool = WorkerPool(1)
    try:
        task = asyncio.create_task(pool.run(time.sleep, 30))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(pool.run(os.getpid), 10) > 0
    finally:
        await pool.close()


async def test_closed_pool_refuses_work() -> None:
    pool = WorkerPool(1)
    await pool.run(os.getpid)
    await pool.close()

    with pytest.raises(RenderError) as failure:
        await pool.run(os.getpid)

    assert failure.value.reason == "shutting_down"


def test_available_cpus_honours_affinity() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "parent_cpu_max", "expected"),
    [
        ("max 100000", None, None),
        ("150000 100000", None, 1.5),
        ("400000 100000", "200000 100000", 2.0),
    ],
)
def test_cgroup_v2_quota_takes_the_tightest_limit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cpu_max: str,
    parent_cpu_max: str | None,
    expected: float | None,
) -> None:
    leaf = tmp_path / "kubepods" / "pod1"
    leaf.mkdir(parents=True)
    (leaf / "cpu.max").write_text(cpu_max + "\n")
    if parent_cpu_max:
        (tmp_path / "kubepods" / "cpu.max").write_text(parent_cpu_max + "\n")
    monkeypatch.setattr(pool_module, "_CGROUP_ROOT", tmp_path)

    assert pool_module._cgroup_v2_quota("/kubepods/pod1") == expected
