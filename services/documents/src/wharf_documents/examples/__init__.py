"""Example templates that ship with the service, with sample data for each."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

NAMES = ("shipping_label", "invoice")


def template(name: str) -> str:
    """Return the source of example template `name`."""
    return resources.files(__name__).joinpath(f"{_checked(name)}.html").read_text("utf-8")


def sample_data(name: str) -> dict[str, Any]:
    """Return sample data that renders example template `name`."""
    text = resources.files(__name__).joinpath(f"{_checked(name)}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _checked(name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"no example template {name!r}")
    return name
