"""JSON as the standard has it, where Python's parser also takes NaN, Infinity and overflows."""

from __future__ import annotations

import json
import math
from typing import Any


class NotJson(ValueError):
    """A value Python's parser accepts but JSON does not have; the message says which."""


def loads(data: str | bytes | bytearray) -> Any:
    """Parse `data`, raising `NotJson` for NaN, Infinity or a number too large for a double.

    Malformed text raises `json.JSONDecodeError` as `json.loads` does.
    """
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)


def _refuse_constant(name: str) -> Any:
    raise NotJson(f"holds {name}, which JSON does not allow")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson("holds a number too large for a double")
    return value
