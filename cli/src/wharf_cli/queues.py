"""Queue depth per service from RabbitMQ's management API: ready plus unacknowledged."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

logger = logging.getLogger(__name__)

_TIMEOUT = 5.0


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """`url` without its user and password, and headers that carry them instead."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    login, password = unquote(parts.username), unquote(parts.password or "")
    headers = {"Authorization": aiohttp.encode_basic_auth(login, password)}
    return urlunsplit(parts._replace(netloc=netloc)), headers


async def fetch_queues(management_url: str) -> list[dict[str, Any]]:
    """Every queue's name and message counts, from ``/api/queues``."""
    base, headers = split_credentials(management_url)
    url = base.rstrip("/") + "/api/queues"
    params = {"columns": "name,messages_ready,messages_unacknowledged"}
    client_timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
    async with (
        aiohttp.ClientSession(headers=headers, timeout=client_timeout) as session,
        session.get(url, params=params) as response,
    ):
        response.raise_for_status()
        queues: list[dict[str, Any]] = await response.json()
    return queues


def depths(queues: Iterable[dict[str, Any]], services: Iterable[str]) -> dict[str, int]:
    """Sum ready and unacknowledged messages over each service's ``wharf.<name>.`` queues."""
    totals = dict.fromkeys(services, 0)
    for queue in queues:
        name = str(queue.get("name", ""))
        for service in totals:
            if name.startswith(f"wharf.{service}."):
                ready = queue.get("messages_ready") or 0
                unacked = queue.get("messages_unacknowledged") or 0
                totals[service] += int(ready) + int(unacked)
    return totals


async def queue_depths(management_url: str, services: Iterable[str]) -> dict[str, int] | None:
    """Depth of each service's queues, or None when the management API does not answer."""
    try:
        queues = await fetch_queues(management_url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.debug("management API unavailable: %s", exc)
        return None
    return depths(queues, services)
