"""Carrier-published code reference tables (CSV), such as Hermes' event codes."""

from __future__ import annotations

from dataclasses import dataclass

from .classify import Classification, classify_text
from .decoding import csv_rows


@dataclass(frozen=True)
class CodeEntry:
    """One row of a carrier's event-code table."""

    code: str
    short_code: str | None
    texts: dict[str, str]


def load_code_table(
    carrier: str, payload: bytes, content_type: str | None = None
) -> list[CodeEntry]:
    """Rows of a semicolon/comma CSV code table with a header row.

    The first column is the code, the second (if present) a short code; every
    other non-empty cell is kept under its header. Windows-1252 files decode
    correctly with or without a declared charset.
    """
    rows = csv_rows(carrier, payload, content_type)
    if len(rows) < 2:
        return []
    header = [cell.strip() for cell in rows[0]]
    entries = []
    for row in rows[1:]:
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0]:
            continue
        texts = {
            header[i]: cells[i]
            for i in range(2, min(len(header), len(cells)))
            if cells[i] and cells[i].lower() not in {"true", "false"}
        }
        short = cells[1] if len(cells) > 1 and cells[1] else None
        entries.append(CodeEntry(code=cells[0], short_code=short, texts=texts))
    return entries


def suggest_statuses(entries: list[CodeEntry]) -> dict[str, Classification | None]:
    """A text-rule classification per code, to review before adding it to a table."""
    return {entry.code: classify_text(entry.texts.values()) for entry in entries}
