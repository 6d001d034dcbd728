"""Codes first, description text second: carrier events to canonical statuses.

Mapping tables are data (``data/carriers.toml`` and ``data/text_rules.toml``);
every decision names the rule that made it.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from prometheus_client import Counter

from .models import Status

UNKNOWN_CODES = Counter(
    "wharf_carrier_unknown_codes",
    "Carrier events whose codes and text matched no mapping, by carrier and code",
    ["carrier", "code"],
)


@dataclass(frozen=True)
class CarrierTable:
    """One carrier's configured zone and code mappings."""

    name: str
    default_zone: str
    codes: dict[str, Status] = field(default_factory=dict)
    fallback: dict[str, Status] = field(default_factory=dict)


@dataclass(frozen=True)
class TextRule:
    """A named status keyed by description-text patterns."""

    name: str
    status: Status
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Classification:
    """A canonical status and the rule that chose it."""

    status: Status
    rule: str


def _read(name: str) -> dict[str, object]:
    data = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(data)


@cache
def tables() -> dict[str, CarrierTable]:
    """Every carrier table, loaded once from the packaged data file."""
    loaded: dict[str, CarrierTable] = {}
    for name, raw in _read("carriers.toml").items():
        assert isinstance(raw, dict)
        loaded[name] = CarrierTable(
            name=name,
            default_zone=str(raw.get("default_zone", "UTC")),
            codes={k: Status(v) for k, v in raw.get("codes", {}).items()},
            fallback={k: Status(v) for k, v in raw.get("fallback", {}).items()},
        )
    return loaded


@cache
def text_rules() -> tuple[TextRule, ...]:
    """The ordered, multilingual description rules."""
    raw_rules = _read("text_rules.toml")["rule"]
    assert isinstance(raw_rules, list)
    return tuple(
        TextRule(
            name=rule["name"],
            status=Status(rule["status"]),
            patterns=tuple(re.compile(pattern) for pattern in rule["patterns"]),
        )
        for rule in raw_rules
    )


def fold(text: str) -> str:
    """Lower case, accents removed, quotes unified and whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def classify_text(texts: Iterable[str | None]) -> Classification | None:
    """The first text rule matching any of the texts, in rule order."""
    folded = [fold(text) for text in texts if text and text.strip()]
    if not folded:
        return None
    for rule in text_rules():
        for text in folded:
            if any(pattern.search(text) for pattern in rule.patterns):
                return Classification(rule.status, f"text:{rule.name}")
    return None


def classify(
    table_name: str,
    codes: Sequence[tuple[str, str | None]],
    texts: Sequence[str | None],
) -> Classification:
    """Classify one event: mapped codes, then text rules, then fallback codes.

    An event nothing matches is ``unknown`` and its first code is counted in
    ``wharf_carrier_unknown_codes_total`` so that a mapping can be added.
    """
    table = tables().get(table_name) or CarrierTable(table_name, "UTC")
    present = [(kind, code.strip()) for kind, code in codes if code and code.strip()]
    for kind, code in present:
        status = table.codes.get(f"{kind}:{code}")
        if status is not None:
            return Classification(status, f"{table_name}:{kind}:{code}")

    by_text = classify_text(texts)
    if by_text is not None:
        return by_text

    for kind, code in present:
        status = table.fallback.get(f"{kind}:{code}")
        if status is not None:
            return Classification(status, f"{table_name}:{kind}:{code}")

    UNKNOWN_CODES.labels(carrier=table_name, code=present[0][1] if present else "").inc()
    return Classification(Status.UNKNOWN, "unmatched")


def unknown_code_counts() -> dict[tuple[str, str], int]:
    """Counts of unmatched (carrier, code) pairs since the process started."""
    counts: dict[tuple[str, str], int] = {}
    for metric in UNKNOWN_CODES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels["carrier"], sample.labels["code"])
                counts[key] = int(sample.value)
    return counts
