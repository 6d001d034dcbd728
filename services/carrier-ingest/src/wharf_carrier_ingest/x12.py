"""A small X12 interchange reader honouring the delimiters declared in ISA."""

from __future__ import annotations

from dataclasses import dataclass

_ISA_ELEMENTS = 16


@dataclass(frozen=True)
class Delimiters:
    """Element, component and segment separators of one interchange."""

    element: str
    component: str
    segment: str


def delimiters(text: str) -> Delimiters:
    """Read the separators from the fixed-layout ISA segment.

    The element separator is the character after "ISA"; the component
    separator is ISA16; the segment terminator is the character after it.
    Raises ValueError when the text does not open with a well-formed ISA.
    """
    if not text.startswith("ISA") or len(text) < 106:
        raise ValueError("payload does not start with an ISA segment")
    element = text[3]
    if element.isalnum() or element.isspace():
        raise ValueError(f"invalid element separator {element!r}")
    position = 3
    for _ in range(_ISA_ELEMENTS - 1):
        position = text.find(element, position + 1)
        if position < 0:
            raise ValueError("ISA segment has fewer than 16 elements")
    component = text[position + 1]
    segment = text[position + 2] if len(text) > position + 2 else ""
    if not segment or segment.isalnum():
        raise ValueError("ISA segment has no segment terminator")
    if segment == "\r" and text[position + 3 : position + 4] == "\n":
        segment = "\r\n"
    return Delimiters(element, component, segment)


def segments(text: str) -> list[list[str]]:
    """Every segment as a list of elements (tag first), whitespace around segments dropped."""
    body = text.lstrip("\ufeff \t\r\n")
    marks = delimiters(body)
    parts = body.split(marks.segment)
    return [part.strip("\r\n").split(marks.element) for part in parts if part.strip("\r\n ")]


def element(segment: list[str], index: int) -> str | None:
    """The stripped element at a 1-based position, or None when absent or blank."""
    if index >= len(segment):
        return None
    value = segment[index].strip()
    return value or None
