"""Bundles of rendered PDFs: one merged PDF, or a zip of them, written to temporary files.

Both are synchronous and CPU- or disk-bound: call them through
``asyncio.to_thread`` or a worker pool, never on the event loop.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path
from typing import IO

from pypdf import PdfReader, PdfWriter

PdfSource = bytes | str | os.PathLike[str]

_UNSAFE_NAME = re.compile(r"[^\w.\- ()]+")
_COPY_CHUNK = 1024 * 1024


def merge_pdfs(
    sources: Iterable[PdfSource], destination: str | os.PathLike[str] | None = None
) -> tuple[Path, int]:
    """Merge PDFs in order into one file; return its path and page count.

    Without a destination the file is created in the temporary directory and
    belongs to the caller.
    """
    path = _destination(destination, ".pdf")
    writer = PdfWriter()
    try:
        for source in sources:
            writer.append(_open_pdf(source))
        pages = len(writer.pages)
        with path.open("wb") as output:
            writer.write(output)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        writer.close()
    return path, pages


def zip_pdfs(
    items: Iterable[tuple[str, PdfSource]], destination: str | os.PathLike[str] | None = None
) -> tuple[Path, int]:
    """Write (name, PDF) items into a zip one at a time; return its path and entry count.

    Names are made safe and unique; each PDF is streamed into the archive, so
    only one item is in memory at a time.
    """
    path = _destination(destination, ".zip")
    used: set[str] = set()
    count = 0
    try:
        with zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6
        ) as archive:
            for name, source in items:
                entry = _unique(_safe_name(name), used)
                with archive.open(entry, "w", force_zip64=True) as member:
                    _copy_into(source, member)
                count += 1
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, count


def _open_pdf(source: PdfSource) -> PdfReader:
    if isinstance(source, bytes):
        return PdfReader(BytesIO(source))
    return PdfReader(Path(source))


def _copy_into(source: PdfSource, member: IO[bytes]) -> None:
    if isinstance(source, bytes):
        member.write(source)
        return
    with Path(source).open("rb") as stream:
        shutil.copyfileobj(stream, member, _COPY_CHUNK)


def _destination(destination: str | os.PathLike[str] | None, suffix: str) -> Path:
    if destination is not None:
        return Path(destination)
    handle, name = tempfile.mkstemp(prefix="wharf-bundle-", suffix=suffix)
    os.close(handle)
    return Path(name)


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base).strip(" .") or "document"
    if not base.lower().endswith(".pdf"):
        base = f"{base}.pdf"
    return base[-150:]


def _unique(name: str, used: set[str]) -> str:
    candidate = name
    stem = name[: -len(".pdf")]
    number = 2
    while candidate.lower() in used:
        candidate = f"{stem} ({number}).pdf"
        number += 1
    used.add(candidate.lower())
    return candidate
