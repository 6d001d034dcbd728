from __future__ import annotations

import io
import os
import resource
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

from wharf_common import deadlines
from wharf_documents import examples
from wharf_documents.errors import RenderError
from wharf_documents.render import Renderer, RenderRequest, RenderResult
from wharf_documents.settings import DocumentsSettings

MIB = 1024 * 1024
# The sandbox bounds `~` and `+`, not filters: only the memory cap stops this.
GROWS_BY_JOIN = (
    '{% set ns = namespace(s="x") %}{% for i in range(40) %}'
    "{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}{{ ns.s|length }}"
)


def _sample(directory: Path, html_name: str) -> RenderRequest:
    assets = {
        str(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file() and path.name != html_name
    }
    return RenderRequest(template=(directory / html_name).read_text("utf-8"), assets=assets)


def _text(result: RenderResult) -> str:
    reader = PdfReader(io.BytesIO(result.pdf))
    assert len(reader.pages) == result.pages
    return "\n".join(page.extract_text() for page in reader.pages)


def _fonts(result: RenderResult) -> set[str]:
    reader = PdfReader(io.BytesIO(result.pdf))
    names: set[str] = set()
    for page in reader.pages:
        fonts = page["/Resources"].get_object().get("/Font", {})
        for font in fonts.values():
            names.add(str(font.get_object()["/BaseFont"]))
    return names


@pytest.mark.parametrize(
    ("sample", "html", "pages", "phrases", "font"),
    [
        ("invoice", "invoice.html", 1, ["Invoice", "Website design", "10,545.00"], "sourcesans"),
        ("letter", "letter.html", 1, ["Cher Aurélien Leno", "Bon de commande"], "pacifico"),
        ("report", "report.html", 8, ["Report example", "Table of contents"], "firasans"),
    ],
)
async def test_corpus_samples_render_with_their_own_assets(
    renderer: Renderer,
    samples_dir: Path,
    sample: str,
    html: str,
    pages: int,
    phrases: list[str],
    font: str,
) -> None:
    result = await renderer.render(_sample(samples_dir / sample, html))

    text = _text(result)
    assert result.pdf.startswith(b"%PDF-")
    assert result.pages == pages
    for phrase in phrases:
        assert phrase in text
    assert any(font in name.lower().replace("-", "") for name in _fonts(result))


async def test_shipping_label_example_has_barcode_qr_and_address(renderer: Renderer) -> None:
    request = RenderRequest(
        examples.template("shipping_label"), examples.sample_data("shipping_label")
    )

    result = await renderer.render(request)

    text = _text(result)
    assert result.pages == 1
    assert "Ada Lovelace" in text
    assert "SW1A 1AA London" in text
    assert "14 May 2024" in text
    assert "WH2024000123456" in text


async def test_invoice_example_formats_money_and_dates(renderer: Renderer) -> None:
    request = RenderRequest(examples.template("invoice"), examples.sample_data("invoice"))

    result = await renderer.render(request)

    text = _text(result)
    assert "Invoice INV-2024-0042" in text
    assert "€45.35" in text
    assert "14 May 2024" in text
    assert "Analytical Engines Ltd" in text


async def test_template_error_is_reported_with_its_reason(renderer: Renderer) -> None:
    with pytest.raises(RenderError) as failure:
        await renderer.render(RenderRequest("{{ ''.__class__.__mro__ }}"))

    assert failure.value.reason == "template_error"
    assert "unsafe" in failure.value.message


@pytest.mark.parametrize(
    "html",
    [
        '<img src="file:///etc/passwd">',
        '<link rel="stylesheet" href="file:///etc/passwd">',
        "<style>@import url(file:///etc/hostname);</style>",
        '<img src="http://169.254.169.254/latest/meta-data/">',
        '<img src="http://127.0.0.1:8080/">',
        '<svg width="10" height="10"><image href="file:///etc/passwd" width="9" height="9"/></svg>',
        '<object data="file:///etc/passwd" type="image/png"></object>',
    ],
)
async def test_local_files_and_internal_hosts_fail_the_render(
    renderer: Renderer, html: str
) -> None:
    with pytest.raises(RenderError) as failure:
        await renderer.render(RenderRequest(html))

    assert failure.value.reason == "fetch_refused"


async def test_missing_asset_fails_the_render(renderer: Renderer) -> None:
    with pytest.raises(RenderError) as failure:
        await renderer.render(RenderRequest('<img src="img/missing.png">'))

    assert failure.value.reason == "fetch_failed"
    assert "img/missing.png" in failure.value.message


async def test_css_field_and_data_uri_are_used(renderer: Renderer) -> None:
    request = RenderRequest(
        '<p class="x">styled</p><img src="data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E">',
        css="@page { size: A6 } .x { color: red }",
    )

    result = await renderer.render(request)

    box = PdfReader(io.BytesIO(result.pdf)).pages[0].mediabox
    assert round(float(box.width)) == 298
    assert "styled" in _text(result)


async def test_page_and_output_caps_fail_with_too_large() -> None:
    settings = DocumentsSettings(
        render_workers=1, render_max_pages=3, render_max_template_bytes=200
    )
    many_pages = (
        "{% for i in range(10) %}<p style='page-break-after: always'>{{ i }}</p>{% endfor %}"
    )

    async with Renderer(settings) as renderer:
        with pytest.raises(RenderError) as pages:
            await renderer.render(RenderRequest(many_pages))
        with pytest.raises(RenderError) as template:
            await renderer.render(RenderRequest("x" * 201))

    assert pages.value.reason == "too_large"
    assert template.value.reason == "too_large"


async def test_data_that_cannot_reach_a_worker_fails_cleanly(renderer: Renderer) -> None:
    with pytest.raises(RenderError) as failure:
        await renderer.render(RenderRequest("{{ x }}", {"x": lambda: None}))

    assert failure.value.reason == "render_failed"
    assert (await renderer.render(RenderRequest("<p>still fine</p>"))).pages == 1


async def test_expired_deadline_fails_before_rendering(renderer: Renderer) -> None:
    request = RenderRequest("<p>late</p>", deadline=deadlines.now() - timedelta(seconds=1))

    with pytest.raises(RenderError) as failure:
        await renderer.render(request)

    assert failure.value.reason == "deadline_exceeded"


async def test_a_render_past_the_memory_cap_fails_and_its_worker_renders_the_next() -> None:
    settings = DocumentsSettings(render_workers=1, render_max_memory_bytes=256 * MIB)
    invoice = RenderRequest(examples.template("invoice"), examples.sample_data("invoice"))

    async with Renderer(settings) as renderer:
        limits = await renderer.pool.run(resource.getrlimit, resource.RLIMIT_DATA)
        worker = await renderer.pool.run(os.getpid)
        with pytest.raises(RenderError) as failure:
            await renderer.render(RenderRequest(GROWS_BY_JOIN))
        result = await renderer.render(invoice)
        after = await renderer.pool.run(os.getpid)

    assert limits == (256 * MIB, 256 * MIB)
    assert after == worker, "the worker should have freed the memory and lived on"
    assert failure.value.reason == "too_large"
    assert "more than the 256 MiB a worker may use" in failure.value.message
    assert result.pages == 1


def test_memory_cap_is_off_or_leaves_a_worker_room_to_start() -> None:
    assert DocumentsSettings(render_max_memory_bytes=0).render_max_memory_bytes == 0
    with pytest.raises(ValidationError, match="at least"):
        DocumentsSettings(render_max_memory_bytes=2048)
