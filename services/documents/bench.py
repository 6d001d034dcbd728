"""Benchmark: the corpus invoice through the Renderer, next to plain in-process WeasyPrint.

Run from the repository root:

    .venv/bin/python services/documents/bench.py [-n 50] [--workers N] [--strict]

It prints renders per second and p50/p95 latencies for both, their ratio, the
installed fontTools version and which library subsets fonts, then a one-line
summary. fontTools 4.68.0 made font subsetting about five times slower, so the
script warns when fontTools is not the pinned version, when the baseline
invoice takes longer than --max-ms, when writing the PDF (where fonts are
subset) takes more than --max-write-ratio times the layout, or when the
Renderer's per-render time exceeds the baseline's by more than --max-ratio.
With --strict a warning exits 1. In the "workers busy" line every render is
queued at once, so its latencies include the wait for a worker.
Sizes also come from WHARF_BENCH_RENDERS and WHARF_CORPUS.

With --service N it also runs the whole service in this process against the
RabbitMQ and PostgreSQL of the WHARF_* settings (in a throwaway virtual host
and database, with local object storage): one batch of N invoices from the
RPC call to the stored PDFs, in documents per second next to the in-process
limit (baseline x workers), and --cold K fresh Python processes that each
render one invoice, as a cold function would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import weasyprint
from weasyprint.text import ffi

from wharf_common.envelope import Envelope
from wharf_common.testing import running
from wharf_documents.app import spec
from wharf_documents.context import RPC_QUEUE
from wharf_documents.pool import available_cpus
from wharf_documents.render import Renderer, RenderRequest
from wharf_documents.settings import DocumentsSettings

PINNED_FONTTOOLS = "4.67.0"
DEFAULT_MAX_MS = 600.0
DEFAULT_MAX_RATIO = 1.5
DEFAULT_MAX_WRITE_RATIO = 4.0


def _invoice_dir() -> Path:
    corpus = os.environ.get("WHARF_CORPUS")
    root = Path(corpus) if corpus else Path(__file__).resolve().parents[2].parent / "shared/corpus"
    return root / "documents" / "weasyprint-samples" / "invoice"


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _figures(name: str, latencies: Sequence[float], wall: float) -> dict[str, float]:
    figures = {
        "rps": len(latencies) / wall,
        "p50": _percentile(latencies, 0.5) * 1000,
        "p95": _percentile(latencies, 0.95) * 1000,
        "mean": statistics.fmean(latencies) * 1000,
    }
    print(
        f"{name:<28} {figures['rps']:7.2f} renders/s   p50 {figures['p50']:7.1f} ms"
        f"   p95 {figures['p95']:7.1f} ms   ({len(latencies)} renders)"
    )
    return figures


def _baseline(directory: Path, count: int) -> tuple[dict[str, float], float]:
    html = (directory / "invoice.html").read_text("utf-8")
    base_url = f"{directory.as_uri()}/"
    weasyprint.HTML(string=html, base_url=base_url).write_pdf()
    latencies, layouts, writes = [], [], []
    started = time.perf_counter()
    for _ in range(count):
        begun = time.perf_counter()
        document = weasyprint.HTML(string=html, base_url=base_url).render()
        laid_out = time.perf_counter()
        document.write_pdf()
        done = time.perf_counter()
        latencies.append(done - begun)
        layouts.append(laid_out - begun)
        writes.append(done - laid_out)
    figures = _figures("in-process weasyprint", latencies, time.perf_counter() - started)
    # Font subsetting happens while writing: its share of the render, unlike a
    # time in ms, hardly depends on the machine.
    write_ratio = statistics.median(writes) / statistics.median(layouts)
    return figures, write_ratio


def _request(directory: Path) -> RenderRequest:
    return RenderRequest(
        template=(directory / "invoice.html").read_text("utf-8"),
        assets={p.name: p.read_bytes() for p in directory.iterdir() if p.name != "invoice.html"},
    )


async def _through_renderer(
    request: RenderRequest, count: int, workers: int
) -> tuple[dict[str, float], dict[str, float]]:
    settings = DocumentsSettings(render_workers=workers, render_max_tasks_per_worker=0)
    async with Renderer(settings) as renderer:

        async def timed() -> float:
            begun = time.perf_counter()
            await renderer.render(request)
            return time.perf_counter() - begun

        # Warm every worker first: its first render loads fonts and caches.
        await asyncio.gather(*(timed() for _ in range(workers * 2)))

        latencies = []
        started = time.perf_counter()
        for _ in range(count):
            latencies.append(await timed())
        sequential = _figures("renderer, one at a time", latencies, time.perf_counter() - started)

        started = time.perf_counter()
        latencies = list(await asyncio.gather(*(timed() for _ in range(count * workers))))
        parallel = _figures(
            f"renderer, {workers} workers busy", latencies, time.perf_counter() - started
        )
    return sequential, parallel


@asynccontextmanager
async def _scratch(settings: DocumentsSettings) -> AsyncIterator[DocumentsSettings]:
    """A throwaway virtual host, database and object directory for one service run."""
    name = f"wharf_bench_{uuid.uuid4().hex[:12]}"
    management = urlsplit(settings.management_url)
    host = f"{management.hostname}:{management.port or 15672}"
    api = urlunsplit(management._replace(netloc=host, path="/api"))
    login = f"{management.username or 'guest'}:{management.password or 'guest'}"
    auth = {"Authorization": f"Basic {base64.b64encode(login.encode()).decode()}"}
    # The throwaway database is made from the server's maintenance database,
    # so the configured one need not exist yet.
    admin = await asyncpg.connect(
        urlunsplit(urlsplit(settings.database_url)._replace(path="/postgres"))
    )
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.put(f"{api}/vhosts/{name}") as response:
            response.raise_for_status()
        user = urlsplit(settings.amqp_url).username or "guest"
        grant = {"configure": ".*", "write": ".*", "read": ".*"}
        async with http.put(f"{api}/permissions/{name}/{quote(user)}", json=grant) as response:
            response.raise_for_status()
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with tempfile.TemporaryDirectory() as objects:
                yield settings.model_copy(
                    update={
                        "amqp_url": urlunsplit(
                            urlsplit(settings.amqp_url)._replace(path=f"/{name}")
                        ),
                        "database_url": urlunsplit(
                            urlsplit(settings.database_url)._replace(path=f"/{name}")
                        ),
                        "storage_url": f"file://{objects}",
                        "log_to_bus": False,
                    }
                )
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            async with http.delete(f"{api}/vhosts/{name}"):
                pass


def _archive(directory: Path) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in directory.iterdir():
            archive.write(path, "index.html" if path.name == "invoice.html" else path.name)
    return base64.b64encode(buffer.getvalue()).decode()


async def _through_service(directory: Path, count: int, workers: int) -> dict[str, float]:
    base = DocumentsSettings(render_workers=workers, render_max_tasks_per_worker=0)
    async with _scratch(base) as settings, running(spec(), settings) as service:
        bus = service.runtime.bus

        async def call(type: str, data: dict[str, Any]) -> Any:
            envelope = Envelope(type=type, tenant="bench", body={"data": data})
            return await bus.call(RPC_QUEUE, envelope, timeout=60)

        await call("documents.create_template", {"name": "invoice", "archive": _archive(directory)})
        warm = [{"data": {}} for _ in range(workers * 2)]
        await _batch(call, warm)
        started = time.perf_counter()
        batch = await _batch(call, [{"data": {"n": n}} for n in range(count)])
        wall = time.perf_counter() - started
    rate = batch["done"] / wall
    print(f"{'service, one batch':<28} {rate:7.2f} documents/s ({batch['done']} stored PDFs)")
    return {"rps": rate, "failed": batch["failed"]}


async def _batch(call: Any, items: list[dict[str, Any]]) -> Any:
    batch = await call("documents.create_batch", {"template": "invoice", "items": items})
    while batch["status"] not in ("done", "failed"):
        await asyncio.sleep(0.05)
        batch = await call("documents.get_batch", {"id": batch["id"]})
    return batch


_COLD = """
import sys, weasyprint
weasyprint.HTML(filename=sys.argv[1]).write_pdf()
"""


def _cold(directory: Path, count: int, workers: int) -> dict[str, float]:
    started = time.perf_counter()
    running_: list[subprocess.Popen[bytes]] = []
    for _ in range(count):
        if len(running_) >= workers:
            running_.pop(0).wait()
        running_.append(
            subprocess.Popen([sys.executable, "-c", _COLD, str(directory / "invoice.html")])
        )
    for process in running_:
        process.wait()
    rate = count / (time.perf_counter() - started)
    print(f"{'process per document':<28} {rate:7.2f} documents/s ({count} processes)")
    return {"rps": rate}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", type=int, default=int(os.environ.get("WHARF_BENCH_RENDERS", "50")), help="renders"
    )
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument("--max-ms", type=float, default=DEFAULT_MAX_MS)
    parser.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO)
    parser.add_argument("--max-write-ratio", type=float, default=DEFAULT_MAX_WRITE_RATIO)
    parser.add_argument("--strict", action="store_true", help="exit 1 on any warning")
    parser.add_argument("--service", type=int, default=0, help="documents through the service")
    parser.add_argument("--cold", type=int, default=0, help="fresh processes, one per document")
    args = parser.parse_args(argv)

    directory = _invoice_dir()
    if not (directory / "invoice.html").is_file():
        print(f"no invoice sample at {directory} (set WHARF_CORPUS)", file=sys.stderr)
        return 2

    fonttools = metadata.version("fonttools")
    subsetter = "harfbuzz" if ffi.harfbuzz_subset is not None else "fontTools"
    print(
        f"weasyprint {weasyprint.__version__}, fontTools {fonttools}, fonts subset by {subsetter}"
    )
    print(f"{available_cpus()} CPUs available, {args.workers} workers, n={args.n}")

    baseline, write_ratio = _baseline(directory, args.n)
    sequential, parallel = asyncio.run(_through_renderer(_request(directory), args.n, args.workers))

    ratio = sequential["p50"] / baseline["p50"]
    scaling = parallel["rps"] / (baseline["rps"] * args.workers)
    print(f"renderer p50 / baseline p50: {ratio:.2f}")
    print(f"throughput / (baseline x workers): {scaling:.2f}")
    print(f"PDF writing (font subsetting) / layout time: {write_ratio:.2f}")

    warnings = []
    if fonttools != PINNED_FONTTOOLS:
        warnings.append(
            f"fontTools {fonttools} is not the pinned {PINNED_FONTTOOLS}"
            " (4.68.0 subsets fonts about five times slower)"
        )
    if baseline["p50"] > args.max_ms:
        warnings.append(f"invoice p50 {baseline['p50']:.0f} ms is over {args.max_ms:.0f} ms")
    if write_ratio > args.max_write_ratio:
        warnings.append(
            f"writing the PDF takes {write_ratio:.1f}x the layout time, over"
            f" {args.max_write_ratio:.1f}x: font subsetting has slowed down"
        )
    if ratio > args.max_ratio:
        warnings.append(f"renderer/baseline ratio {ratio:.2f} is over {args.max_ratio:.2f}")
    for warning in warnings:
        print(f"WARNING: {warning}")

    limit = baseline["rps"] * args.workers
    if args.service:
        service = asyncio.run(_through_service(directory, args.service, args.workers))
        print(f"service / in-process limit: {service['rps'] / limit:.2f}")
        print(f"service / renderer with all workers busy: {service['rps'] / parallel['rps']:.2f}")
    if args.cold:
        cold = _cold(directory, args.cold, args.workers)
        print(f"in-process limit / process per document: {limit / cold['rps']:.1f}")

    print(
        f"SUMMARY invoice: baseline p50 {baseline['p50']:.0f} ms, renderer p50"
        f" {sequential['p50']:.0f} ms (x{ratio:.2f}), {parallel['rps']:.1f} renders/s on"
        f" {args.workers} workers ({scaling:.2f} of linear), write/layout {write_ratio:.1f},"
        f" fontTools {fonttools},"
        f" {'WARN' if warnings else 'OK'}"
    )
    return 1 if warnings and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
