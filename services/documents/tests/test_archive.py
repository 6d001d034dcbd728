from __future__ import annotations

import io
import zipfile

import pytest

from wharf_documents.archive import read_archive
from wharf_documents.errors import TemplateError


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_archive_with_a_damaged_entry_is_a_template_error() -> None:
    css = b"body { color: black; }" * 200
    data = bytearray(zipped({"index.html": b"<p>hi</p>", "style.css": css}))
    # Flip a byte inside the compressed data of the second entry: its CRC no longer matches.
    offset = data.index(b"style.css") + len(b"style.css") + 10
    data[offset] ^= 0xFF

    with pytest.raises(TemplateError, match=r"cannot be read|not a zip"):
        read_archive(bytes(data))


def test_archive_reads_index_and_assets() -> None:
    archive = read_archive(zipped({"index.html": b"<p>hi</p>", "img/logo.svg": b"<svg/>"}))

    assert archive.html == "<p>hi</p>"
    assert archive.assets == {"img/logo.svg": b"<svg/>"}
