"""Template uploads as a zip: ``index.html`` and the assets beside it."""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

from wharf_documents.errors import TemplateError, TooLarge
from wharf_documents.fetcher import normalise_asset_path

INDEX = "index.html"


@dataclass(frozen=True, slots=True)
class TemplateArchive:
    """An uploaded template: its HTML source and its assets by relative path."""

    html: str
    assets: dict[str, bytes]


def read_archive(
    data: bytes, *, max_bytes: int = 50 * 1024 * 1024, max_files: int = 500
) -> TemplateArchive:
    """Unpack an uploaded zip, refusing paths outside it and sizes past the caps."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise TemplateError("the archive is not a zip file") from None

    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > max_files:
            raise TooLarge(f"the archive has more than {max_files} files")
        # Declared sizes are checked first, actual sizes while reading: a zip can lie.
        if sum(info.file_size for info in members) > max_bytes:
            raise TooLarge(f"the archive unpacks to more than {max_bytes} bytes")
        assets: dict[str, bytes] = {}
        total = 0
        for info in members:
            name = normalise_asset_path(info.filename)
            if name is None:
                raise TemplateError(f"the archive has an unsafe path: {info.filename!r}")
            try:
                with archive.open(info) as member:
                    content = member.read(max_bytes - total + 1)
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                NotImplementedError,
                RuntimeError,
            ) as exc:
                # A damaged entry (bad CRC, wrong size), or a compression or
                # encryption this reader does not support.
                raise TemplateError(f"the archive cannot be read: {exc}") from None
            total += len(content)
            if total > max_bytes:
                raise TooLarge(f"the archive unpacks to more than {max_bytes} bytes")
            assets[name] = content

    index = assets.pop(INDEX, None)
    if index is None:
        raise TemplateError(f"the archive has no {INDEX}")
    try:
        html = index.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TemplateError(f"{INDEX} is not UTF-8") from None
    return TemplateArchive(html=html, assets=assets)
