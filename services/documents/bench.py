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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import weasyprint
from weasyprint.text import ffi

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
