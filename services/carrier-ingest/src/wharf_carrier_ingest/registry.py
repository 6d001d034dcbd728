"""Adapters registered by name, and the single entry point that runs them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import InvalidPayload, UnknownCarrier
from .events import ResultBuilder
from .models import ParseResult


@dataclass(frozen=True)
class Request:
    """One payload and what came with it."""

    payload: bytes
    content_type: str | None
    tracking_number: str | None


Adapter = Callable[[Request, ResultBuilder], None]


@dataclass(frozen=True)
class _Entry:
    adapter: Adapter
    carrier: str
    table: str


_ADAPTERS: dict[str, _Entry] = {}


def register(
    name: str, *, carrier: str | None = None, table: str | None = None
) -> Callable[[Adapter], Adapter]:
    """Register an adapter under a carrier-format name."""

    def decorate(adapter: Adapter) -> Adapter:
        if name in _ADAPTERS:
            raise ValueError(f"adapter {name!r} registered twice")
        _ADAPTERS[name] = _Entry(adapter, carrier or name, table or name)
        return adapter

    return decorate


def carriers() -> list[str]:
    """Names of every registered carrier format, sorted."""
    _load()
    return sorted(_ADAPTERS)


def parse(
    carrier: str,
    payload: bytes,
    content_type: str | None = None,
    *,
    tracking_number: str | None = None,
    zone_overrides: Mapping[str, str] | None = None,
) -> ParseResult:
    """Translate one raw carrier payload into canonical events and outcomes.

    ``tracking_number`` names the shipment for formats whose replies omit it
    (DPD); ``zone_overrides`` maps carrier names to IANA zones that replace the
    configured default. Raises InvalidPayload for unreadable input and
    UnknownCarrier for a name nothing is registered under.
    """
    _load()
    entry = _ADAPTERS.get(carrier)
    if entry is None:
        raise UnknownCarrier(f"no adapter for carrier {carrier!r}")
    builder = ResultBuilder(
        carrier, carrier=entry.carrier, table=entry.table, zone_overrides=zone_overrides
    )
    request = Request(payload, content_type, tracking_number)
    try:
        entry.adapter(request, builder)
    except InvalidPayload:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise InvalidPayload(
            carrier, f"unexpected structure: {exc.__class__.__name__}: {exc}"
        ) from exc
    return builder.result()


def _load() -> None:
    from . import adapters  # noqa: F401  (registers every adapter on import)
