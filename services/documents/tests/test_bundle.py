from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from wharf_documents.archive import read_archive
from wharf_documents.bundle import merge_pdfs, zip_pdfs
from wharf_documents.errors import TemplateError, TooLarge
from wharf_documents.render import render_pdf


@pytest.fixture(scope="module")
def pdfs() -> list[bytes]:
    page_break = "<p style='page-break-after: always'>{{ n }}</p>"
    return [
        render_pdf(
            "{% for n in range(count) %}" + page_break + "{% endfor %}", {"count": count}
        ).pdf
        for count in (1, 2, 3)
    ]


def test_merge_keeps_order_and_pages(pdfs: list[bytes], tmp_path: Path) -> None:
    on_disk = tmp_path / "third.pdf"
    on_disk.write_bytes(pdfs[2])

    path, pages = merge_pdfs([pdfs[0], pdfs[1], on_disk])
    try:
        reader = PdfReader(path)
        texts = [page.extract_text().strip() for page in reader.pages]
    finally:
        path.unlink()

    assert pages == 6
    assert texts == ["0", "0", "1", "0", "1", "2"]


def test_merge_of_a_broken_pdf_leaves_no_file(tmp_path: Path) -> None:
    destination = tmp_path / "merged.pdf"

    with pytest.raises(PyPdfError):
        merge_pdfs([b"not a pdf"], destination)

    assert not destination.exists()


def test_zip_streams_items_with_safe_unique_names(pdfs: list[bytes], tmp_path: Path) -> None:
    on_disk = tmp_path / "x.pdf"
    on_disk.write_bytes(pdfs[1])
    items = [("label", pdfs[0]), ("label.pdf", on_disk), ("../../etc/passwd", pdfs[2])]

    path, count = zip_pdfs(items, tmp_path / "bundle.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        second = archive.read(names[1])

    assert count == 3
    assert names == ["label.pdf", "label (2).pdf", "passwd.pdf"]
    assert second == pdfs[1]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_archive_gives_index_and_assets() -> None:
    data = _zip({"index.html": b"<p>{{ x }}</p>", "fonts/a.ttf": b"font", "img/": b""})

    archive = read_archive(data)

    assert archive.html == "<p>{{ x }}</p>"
    assert archive.assets == {"fonts/a.ttf": b"font"}


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"index.html": b"", "../evil": b""}, TemplateError),
        ({"page.html": b""}, TemplateError),
        ({"index.html": b"x" * 2000}, TooLarge),
    ],
)
def test_archive_refuses_unsafe_or_oversized_uploads(
    files: dict[str, bytes], error: type[Exception]
) -> None:
    with pytest.raises(error):
        read_archive(_zip(files), max_bytes=1000)
