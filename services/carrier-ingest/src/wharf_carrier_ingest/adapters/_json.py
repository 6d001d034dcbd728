"""Small helpers for walking carrier JSON safely."""

from __future__ import annotations

from typing import Any


def dig(value: Any, *path: str | int) -> Any:
    """Follow keys and indexes; None as soon as one is missing or of the wrong kind."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(step)
    return value


def text(value: Any) -> str | None:
    """A stripped string for str/int values, None for blanks and anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        stripped = " ".join(value.split())
        return stripped or None
    return None


def items(value: Any) -> list[dict[str, Any]]:
    """The dict members of a list (anything else gives an empty list)."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def require_dict(value: Any) -> dict[str, Any] | None:
    """The value if it is a JSON object, else None."""
    return value if isinstance(value, dict) else None
