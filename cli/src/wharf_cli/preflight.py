"""Checks before the stack starts: RabbitMQ and PostgreSQL answer, the database exists.

A missing dependency is a `Problem`: what is missing and how to start or
install it, printed for the user instead of a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
import asyncpg

from wharf_common.queues import split_credentials

logger = logging.getLogger(__name__)

_TIMEOUT = 5.0

_RABBITMQ_FIX = (
    "start it:       sudo rabbitmq-server -detached   (with systemd: sudo systemctl start"
    " rabbitmq-server)",
    "install it:     sudo apt-get install -y rabbitmq-server",
    "                sudo rabbitmq-plugins enable rabbitmq_management",
    "or with Docker: docker run -d --name wharf-rabbitmq -p 5672:5672 -p 15672:15672"
    " rabbitmq:3.10-management",
)
_MANAGEMENT_FIX = (
    "enable it:      sudo rabbitmq-plugins enable rabbitmq_management",
    "(or point WHARF_MANAGEMENT_URL at the management API, e.g. http://guest:guest@host:15672/)",
)
_POSTGRES_FIX = (
    "start it:       sudo pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "install it:     sudo apt-get install -y postgresql",
    "or with Docker: docker run -d --name wharf-postgres -p 5432:5432"
    " -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15",
)
_POSTGRES_AUTH_FIX = (
    "set WHARF_DATABASE_URL to a role and password that may log in, e.g."
    " postgresql://user:password@127.0.0.1:5432/wharf",
    "(only for a local development server: 'host all all 127.0.0.1/32 trust' in pg_hba.conf)",
)
# Every stack runs auth, whose RPC queue has consumers only while a stack is up.
_PROBE_QUEUE = "wharf.auth.rpc"
_HINT = "(./wharf starts or installs the default local servers itself when run as root.)"


@dataclass(frozen=True)
class Problem:
    """A dependency that is missing or refuses us, and how to fix it."""

    summary: str
    fixes: tuple[str, ...]

    def render(self) -> str:
        """The problem as lines for the terminal."""
        lines = [self.summary, *(f"  {fix}" for fix in self.fixes)]
        return "\n".join(lines)


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def _tcp_error(host: str, port: int) -> str | None:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    writer.close()
    await writer.wait_closed()
    return None


async def check_rabbitmq(amqp_url: str, management_url: str) -> Problem | None:
    """RabbitMQ answers on its AMQP port, and its management API accepts our credentials."""
    host, port = _address(amqp_url, 5671 if amqp_url.startswith("amqps:") else 5672)
    error = await _tcp_error(host, port)
    if error is not None:
        summary = f"RabbitMQ is not reachable at {host}:{port} (WHARF_AMQP_URL): {error}"
        return Problem(summary, (*_RABBITMQ_FIX, _HINT))

    base, headers = split_credentials(management_url)
    mhost, mport = _address(management_url, 15672)
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
            session.get(base.rstrip("/") + "/api/overview") as response,
        ):
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        summary = (
            f"RabbitMQ's management API is not reachable at {mhost}:{mport}"
            f" (WHARF_MANAGEMENT_URL): {exc or type(exc).__name__}"
        )
        return Problem(summary, _MANAGEMENT_FIX)
    if status != 200:
        summary = (
            f"RabbitMQ's management API at {mhost}:{mport} answered {status}:"
            " check the user and password in WHARF_MANAGEMENT_URL"
        )
        return Problem(summary, ())
    return None


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names (``postgres`` when it names none)."""
    return urlsplit(url).path.lstrip("/") or "postgres"


async def ensure_database(database_url: str) -> tuple[bool, Problem | None]:
    """Create the database named in `database_url` if missing; (created, problem)."""
    host, port = _address(database_url, 5432)
    name = database_name(database_url)
    try:
        conn = await asyncpg.connect(_with_database(database_url, "postgres"), timeout=_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        summary = f"PostgreSQL is not reachable at {host}:{port} (WHARF_DATABASE_URL): {exc}"
        return False, Problem(summary, (*_POSTGRES_FIX, _HINT))
    except asyncpg.PostgresError as exc:
        summary = f"PostgreSQL at {host}:{port} refused the login (WHARF_DATABASE_URL): {exc}"
        return False, Problem(summary, _POSTGRES_AUTH_FIX)

    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False, None
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False, None
        except asyncpg.PostgresError as exc:
            summary = f"cannot create database {name!r} on {host}:{port}: {exc}"
            return False, Problem(summary, ("create it yourself, or name one that exists",))
        logger.debug("created database %s", name)
        return True, None
    finally:
        await conn.close()


async def check_vhost(amqp_url: str, management_url: str) -> Problem | None:
    """The virtual host exists, and no other Wharf stack already serves it.

    Two stacks on one virtual host would share every queue and silently
    split each other's work between two databases.
    """
    vhost = unquote(urlsplit(amqp_url).path[1:]) or "/"
    base, headers = split_credentials(management_url)
    api = base.rstrip("/") + "/api"
    quoted = quote(vhost, safe="")
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        async with session.get(f"{api}/vhosts/{quoted}") as response:
            if response.status == 404:
                fixes = (
                    f"create it:  sudo rabbitmqctl add_vhost {vhost}",
                    f"            sudo rabbitmqctl set_permissions -p {vhost} guest '.*' '.*' '.*'",
                )
                return Problem(f"RabbitMQ has no virtual host {vhost!r} (WHARF_AMQP_URL)", fixes)
        async with session.get(f"{api}/queues/{quoted}/{quote(_PROBE_QUEUE, safe='')}") as response:
            if response.status != 200:
                return None
            consumers = int((await response.json()).get("consumers") or 0)
    if consumers == 0:
        return None
    summary = (
        f"another Wharf stack already serves RabbitMQ virtual host {vhost!r}"
        f" ({_PROBE_QUEUE} has {consumers} consumer(s))"
    )
    fixes = (
        "stop it:    wharf down, with that stack's WHARF_HOME",
        "or give this stack its own virtual host: WHARF_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/NAME",
    )
    return Problem(summary, fixes)


async def preflight(
    amqp_url: str, management_url: str, database_url: str, *, check_others: bool = True
) -> tuple[list[Problem], bool]:
    """Every problem found, and whether the database had to be created.

    `check_others` also refuses a virtual host that another stack serves.
    """
    rabbitmq, (created, postgres) = await asyncio.gather(
        check_rabbitmq(amqp_url, management_url), ensure_database(database_url)
    )
    if rabbitmq is None:
        try:
            rabbitmq = await check_vhost(amqp_url, management_url) if check_others else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            rabbitmq = None
    problems = [problem for problem in (rabbitmq, postgres) if problem is not None]
    return problems, created
