from __future__ import annotations

import asyncio

from wharf_documents.gate import RenderGate


async def test_single_documents_go_before_waiting_batch_items() -> None:
    gate = RenderGate(2, 2)
    order: list[str] = []
    release = asyncio.Event()

    async def render(name: str, *, batch: bool) -> None:
        async with gate.slot(batch=batch):
            order.append(name)
            await release.wait()

    running = [asyncio.create_task(render(f"b{n}", batch=True)) for n in range(2)]
    waiting = [asyncio.create_task(render(f"b{n}", batch=True)) for n in range(2, 4)]
    await asyncio.sleep(0)
    single = asyncio.create_task(render("single", batch=False))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*running, *waiting, single)

    assert order[:2] == ["b0", "b1"]
    assert order[2] == "single"


async def test_reserved_slots_stay_free_for_single_documents() -> None:
    gate = RenderGate(2, 1)
    release = asyncio.Event()
    started: list[str] = []

    async def render(name: str, *, batch: bool) -> None:
        async with gate.slot(batch=batch):
            started.append(name)
            await release.wait()

    batch = [asyncio.create_task(render(f"b{n}", batch=True)) for n in range(3)]
    await asyncio.sleep(0.01)
    single = asyncio.create_task(render("single", batch=False))
    await asyncio.sleep(0.01)

    assert started == ["b0", "single"]
    release.set()
    await asyncio.gather(*batch, single)


async def test_a_cancelled_single_document_lets_batch_items_in() -> None:
    gate = RenderGate(1, 1)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot(batch=False):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiting_single = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiting_single.cancel()
    release.set()
    await holder

    async with asyncio.timeout(1), gate.slot(batch=True):
        pass
