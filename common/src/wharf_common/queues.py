"""Queue depth from RabbitMQ's management API: ready plus unacknowledged messages.

A service's queues are named ``wharf.<service>.<work>``; ``<queue>.retry.<n>ms``
delay queues and ``<queue>.dead`` dead letters hang off them. Backlog for
scaling counts the work queues only: more tasks drain neither of the others.

A service may also hold work outside the bus, as rows it feeds to its queues a
few at a time (the documents service's batch items). It declares a backlog
query, one SQL statement answering a single count, and every scaler adds that
count to the queue depth: more tasks drain that work too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

_TIMEOUT = 5.0
_COLUMNS = "name,messages_ready,messages_unacknowledged,consumers,message_stats.ack_details"


@dataclass(frozen=True)
class Backlog:
    """A service's work queues summed: messages waiting or held, consumers, acks per second.

    `held` is the part of `depth` that waits in the service's tables rather
    than on the bus (see `held_backlog`).
    """

    depth: int = 0
    consumers: int = 0
    ack_rate: float = 0.0
    held: int = 0

    def plus_held(self, count: int) -> Backlog:
        """This backlog with `count` items held outside the bus added to its depth."""
        return replace(self, depth=self.depth + count, held=self.held + count)


async def held_backlog(db: asyncpg.Pool | asyncpg.Connection, query: str) -> int:
    """The work a service holds outside the bus, as its backlog query counts it."""
    count = await db.fetchval(query)
    return int(count or 0)


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


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names (``/`` when it names none)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


async def fetch_queues(management_url: str, vhost: str | None = None) -> list[dict[str, Any]]:
    """Every queue's name and message counts, from ``/api/queues`` (of one vhost if given)."""
    base, headers = split_credentials(management_url)
    url = base.rstrip("/") + "/api/queues"
    if vhost is not None:
        url += "/" + quote(vhost, safe="")
    client_timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
    async with (
        aiohttp.ClientSession(headers=headers, timeout=client_timeout) as session,
        session.get(url, params={"columns": _COLUMNS}) as response,
    ):
        response.raise_for_status()
        queues: list[dict[str, Any]] = await response.json()
    return queues


def _messages(queue: dict[str, Any]) -> int:
    ready = queue.get("messages_ready") or 0
    unacked = queue.get("messages_unacknowledged") or 0
    return int(ready) + int(unacked)


def depths(queues: Iterable[dict[str, Any]], services: Iterable[str]) -> dict[str, int]:
    """Sum ready and unacknowledged messages over each service's ``wharf.<name>.`` queues."""
    totals = dict.fromkeys(services, 0)
    for queue in queues:
        name = str(queue.get("name", ""))
        for service in totals:
            if name.startswith(f"wharf.{service}."):
                totals[service] += _messages(queue)
    return totals


def is_work_queue(name: str, service: str) -> bool:
    """True for ``wharf.<service>.<work>``; false for its delay and dead-letter queues."""
    prefix = f"wharf.{service}."
    return name.startswith(prefix) and "." not in name[len(prefix) :]


def backlogs(queues: Iterable[dict[str, Any]], services: Iterable[str]) -> dict[str, Backlog]:
    """Each service's work-queue backlog; consumers is the most any one work queue has."""
    found: dict[str, Backlog] = {service: Backlog() for service in services}
    for queue in queues:
        name = str(queue.get("name", ""))
        for service, sum_so_far in found.items():
            if not is_work_queue(name, service):
                continue
            stats = queue.get("message_stats") or {}
            rate = float((stats.get("ack_details") or {}).get("rate") or 0.0)
            found[service] = Backlog(
                depth=sum_so_far.depth + _messages(queue),
                consumers=max(sum_so_far.consumers, int(queue.get("consumers") or 0)),
                ack_rate=sum_so_far.ack_rate + rate,
            )
    return found


async def queue_depths(
    management_url: str, services: Iterable[str], vhost: str
) -> dict[str, int] | None:
    """Depth of each service's queues in `vhost`, or None when the management API does not answer.

    The virtual host is required: every stack on a broker has queues of the
    same names in a virtual host of its own.
    """
    try:
        queues = await fetch_queues(management_url, vhost)
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.debug("management API unavailable: %s", exc)
        return None
    return depths(queues, services)
