"""The service runtime: start, serve health and metrics, drain on SIGTERM.

A service describes itself with a `ServiceSpec` and a `setup` coroutine that
registers its consumers, RPC handlers, HTTP routes and background tasks on
the `Runtime`. The runtime then:

1. logs one start line with the version and settings (secrets masked);
2. serves ``/healthz``, ``/readyz`` and ``/metrics`` at once (``/readyz``
   answers 503 until the connections are up);
3. connects to RabbitMQ, PostgreSQL and object storage, retrying until they
   answer, applies the service's migrations, and starts what `setup`
   registered;
4. on SIGTERM or SIGINT stops taking work, lets in-flight work finish
   within the stop timeout (the rest is handed back to the broker), ships
   buffered logs, closes everything and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from wharf_common import claimcheck, db, logs, rpc
from wharf_common.bus import LOGS_EXCHANGE, Bus
from wharf_common.consumer import Consumer, Handler
from wharf_common.envelope import Envelope
from wharf_common.errors import StartupError
from wharf_common.http import request_middleware
from wharf_common.queuemetrics import publish_forever
from wharf_common.queues import held_backlog
from wharf_common.settings import ServiceSettings
from wharf_common.storage import ObjectStore, open_store

logger = logging.getLogger(__name__)

READY = Gauge("wharf_ready", "1 when the service's connections are up")
IN_FLIGHT = Gauge("wharf_in_flight", "Messages being handled right now")

# Seconds between two trims of a service's handled_messages table and of
# claim-checked bodies past their retention.
HOUSEKEEPING_INTERVAL = 3600.0

Setup = Callable[["Runtime"], Awaitable[None]]
Task = Callable[[], Awaitable[None]]


class Stoppable(Protocol):
    async def stop(self, timeout: float = 30.0) -> None: ...


@dataclass
class ServiceSpec:
    """What a service tells the runtime about itself."""

    name: str
    version: str
    setup: Setup
    schema: str | None = None
    migrations: Traversable | Path | None = None
    uses_storage: bool = True
    ship_logs: bool = True
    extra_ready_checks: list[Callable[[], bool]] = field(default_factory=list)
    # SQL counting work the service holds in its tables rather than on the bus;
    # the queue depth it publishes for scaling includes that count.
    backlog_query: str | None = None


RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("runtime")


class Runtime:
    """A running service's connections and registered work."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings) -> None:
        self.spec = spec
        self.settings = settings
        # Here as well as in `configure_logging`: a service started without
        # `main` (in a test, say) must not log the bytes of a malformed request.
        logs.quiet_malformed_requests()
        self.app = web.Application(
            middlewares=[request_middleware], client_max_size=8 * 1024 * 1024
        )
        self.app[RUNTIME_KEY] = self
        self.bus: Bus = Bus(
            settings.amqp_url,
            service=spec.name,
            claim_check_threshold=settings.claim_check_threshold,
        )
        self._pool: asyncpg.Pool | None = None
        self._store: ObjectStore | None = None
        self._starters: list[Callable[[], Awaitable[Stoppable | None]]] = []
        self._workers: list[Stoppable] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._task_factories: list[tuple[str, Task]] = []
        self._preparers: list[Task] = []
        self._stop_hooks: list[Callable[[], Awaitable[None]]] = []
        self._log_handler: logs.BusLogHandler | None = None
        self.ready = False
        self.stopping = asyncio.Event()
        self.started_at = time.monotonic()

    @property
    def db(self) -> asyncpg.Pool:
        """The PostgreSQL pool; available once the service has started."""
        if self._pool is None:
            raise RuntimeError(f"{self.spec.name} has no database pool")
        return self._pool

    @property
    def store(self) -> ObjectStore:
        """Object storage; available once the service has started."""
        if self._store is None:
            raise RuntimeError(f"{self.spec.name} has no object store")
        return self._store

    def consume(self, queue: str, handler: Handler, **options: Any) -> None:
        """Consume commands from `queue` once connected (options as for `Consumer`)."""
        options = {**self._consumer_defaults(), **options}

        async def start() -> Stoppable:
            return await self.bus.consume(queue, handler, **options)

        self._starters.append(start)

    def subscribe(self, queue: str, patterns: list[str], handler: Handler, **options: Any) -> None:
        """Consume events matching `patterns` through the durable `queue`."""
        options = {**self._consumer_defaults(), **options}

        async def start() -> Stoppable:
            return await self.bus.subscribe(queue, patterns, handler, **options)

        self._starters.append(start)

    def serve_rpc(self, queue: str, handler: rpc.RpcHandler, **options: Any) -> None:
        """Answer RPC requests on `queue` once connected."""

        async def start() -> Stoppable:
            return await rpc.serve(self.bus, queue, handler, **options)

        self._starters.append(start)

    async def held_backlog(self) -> int:
        """Work the service holds outside the bus, by its backlog query; 0 without one."""
        if self.spec.backlog_query is None:
            return 0
        return await held_backlog(self.db, self.spec.backlog_query)

    def add_task(self, name: str, factory: Task) -> None:
        """Run a background coroutine (a relay, a periodic job) while the service runs."""
        self._task_factories.append((name, factory))

    def add_housekeeping(self, name: str, trim: Callable[[], Awaitable[int]], what: str) -> None:
        """Run `trim` every hour while the service runs; it returns how many `what` it removed.

        A failed run is logged and tried again at the next hour.
        """
        self.add_task(name, functools.partial(_housekeep, trim, what))

    def before_work(self, hook: Task) -> None:
        """Run `hook` once connected, before any work starts.

        A `StartupError` it raises stops the service with its message, so a
        misconfiguration shows at start instead of failing every request.
        """
        self._preparers.append(hook)

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` while stopping, after work has drained, before connections close."""
        self._stop_hooks.append(hook)

    def _consumer_defaults(self) -> dict[str, Any]:
        s = self.settings
        return {
            "prefetch": s.prefetch,
            "concurrency": s.concurrency,
            "max_attempts": s.max_attempts,
            "retry_base_delay": s.retry_base_delay,
            "retry_max_delay": s.retry_max_delay,
        }

    def is_ready(self) -> bool:
        """True when every connection is up and the service has started its work."""
        if not self.ready or self.stopping.is_set() or not self.bus.is_connected:
            return False
        return all(check() for check in self.spec.extra_ready_checks)

    async def connect(self) -> None:
        """Connect to storage, the bus and the database, retrying until they answer."""
        s = self.settings
        if self.spec.uses_storage:
            self._store = await _retrying(
                "object storage",
                lambda: open_store(
                    s.storage_url,
                    signing_key=s.storage_signing_key.get_secret_value(),
                    public_url=s.public_url,
                ),
                self.stopping,
            )
            self.bus.store = self._store
        await _retrying("RabbitMQ", self.bus.connect, self.stopping)
        if self.spec.schema is not None:
            self._pool = await _retrying(
                "PostgreSQL",
                lambda: db.create_pool(s.database_url, max_size=s.db_pool_max),
                self.stopping,
            )
            if self.spec.migrations is not None:
                applied = await db.migrate(self._pool, self.spec.schema, self.spec.migrations)
                if applied:
                    logger.info("applied migrations %s", ", ".join(applied))

    async def start_work(self) -> None:
        """Run the before-work hooks, then start consumers, RPC servers and background tasks."""
        for prepare in self._preparers:
            await prepare()
        if self.spec.ship_logs and self.settings.log_to_bus:
            await self.bus.declare_log_queue()
            self._start_log_shipping()
        for start in self._starters:
            worker = await start()
            if worker is not None:
                self._workers.append(worker)
        if self.spec.schema is not None:
            forget = functools.partial(self._forget_handled, self.spec.schema)
            self.add_housekeeping("forget-handled", forget, "handled message ids")
        if self.spec.uses_storage:
            expire = self._expire_claim_checks
            self.add_housekeeping("expire-claim-checks", expire, "claim-checked bodies")
        for name, factory in self._task_factories:
            self._tasks.append(asyncio.create_task(_guarded(name, factory), name=name))
        _tune_garbage_collector(self.settings.gc_threshold)
        self.ready = True
        READY.set(1)

    async def _forget_handled(self, schema: str) -> int:
        """Drop the idempotency claims older than the retention."""
        retention = timedelta(days=self.settings.handled_retention_days)
        return await db.forget_handled(self.db, schema, retention)

    async def _expire_claim_checks(self) -> int:
        """Delete message bodies checked in before the retention."""
        return await claimcheck.expire(
            self.store,
            retention_days=self.settings.claim_check_retention_days,
            today=datetime.now(UTC).date(),
        )

    def _start_log_shipping(self) -> None:
        handler = logs.BusLogHandler(self.spec.name, capacity=self.settings.log_buffer_size)
        handler.setLevel(self.settings.log_level.upper())
        logging.getLogger().addHandler(handler)
        handler.start(self._ship_logs)
        self._log_handler = handler

    async def _ship_logs(self, records: list[dict[str, Any]]) -> None:
        envelope = Envelope(type="log.records", body=records)
        await self.bus.publish_raw(LOGS_EXCHANGE, self.spec.name, envelope)

    async def drain(self) -> None:
        """Stop taking work and let in-flight work finish within the stop timeout."""
        self.ready = False
        READY.set(0)
        deadline = time.monotonic() + self.settings.stop_timeout
        await asyncio.gather(
            *(w.stop(timeout=max(0.0, deadline - time.monotonic())) for w in self._workers),
            return_exceptions=True,
        )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for hook in self._stop_hooks:
            try:
                await hook()
            except Exception:
                logger.exception("a stop hook failed")

    async def close(self) -> None:
        """Ship the remaining logs and close every connection."""
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            if self.bus.is_connected:
                await self._log_handler.stop(self._ship_logs, timeout=3.0)
        with contextlib.suppress(Exception):
            await self.bus.close()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5.0)
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self._store.close()
        # What startup froze is collectable again, for a process that goes on
        # after its runtime (a test session, a benchmark).
        gc.unfreeze()


async def _retrying(what: str, connect: Callable[[], Awaitable[Any]], stop: asyncio.Event) -> Any:
    delay = 0.5
    while True:
        try:
            return await connect()
        except Exception as exc:
            if stop.is_set():
                raise
            logger.warning("%s is not reachable yet (%s); retrying in %.1f s", what, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                raise
            delay = min(delay * 2, 10.0)


async def _housekeep(trim: Callable[[], Awaitable[int]], what: str) -> None:
    """Run `trim` now and every `HOUSEKEEPING_INTERVAL`; log what it removed or why it failed."""
    while True:
        try:
            removed = await trim()
        except Exception as exc:
            logger.warning("could not remove old %s: %r", what, exc)
        else:
            if removed:
                logger.info("removed %d %s past retention", removed, what)
        await asyncio.sleep(HOUSEKEEPING_INTERVAL)


async def _guarded(name: str, factory: Task) -> None:
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background task %s failed; restarting in 1 s", name)
            await asyncio.sleep(1.0)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME_KEY]
    if rt.is_ready():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready"}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    IN_FLIGHT.set(
        sum(w.in_flight for w in request.app[RUNTIME_KEY]._workers if isinstance(w, Consumer))
    )
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _probe_routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", _healthz),
        web.get("/readyz", _readyz),
        web.get("/metrics", _metrics),
    ]


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A socket listening on `port`; with `reuse_port`, shared with the service's other tasks.

    Sharing is opt-in so that a process started by hand on a port a stack
    already serves fails to start instead of taking a share of its traffic.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _CannotListen(Exception):
    """A port the service needs cannot be bound; the message says which and why."""

    def __init__(self, variable: str, host: str, port: int, exc: OSError) -> None:
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} ({variable}) is in use by another process"
            advice = f"; set {variable} to a free port, or 0 for any"
        else:
            reason = f"cannot listen on {host}:{port} ({variable}): {exc}"
            advice = ""
        super().__init__(reason + advice)


async def _listen(
    rt: Runtime, runner: web.AppRunner, settings: ServiceSettings
) -> tuple[int, web.AppRunner | None]:
    """Serve the app on the HTTP port and the probes on the ops port; the HTTP port bound."""
    host = settings.http_host
    try:
        sock = _listening_socket(host, settings.http_port, reuse_port=settings.http_reuse_port)
    except OSError as exc:
        raise _CannotListen("WHARF_HTTP_PORT", host, settings.http_port, exc) from exc
    port: int = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    if not settings.ops_port or settings.ops_port == settings.http_port:
        return port, None
    ops_app = web.Application()
    ops_app[RUNTIME_KEY] = rt
    ops_app.add_routes(_probe_routes())
    ops_runner = web.AppRunner(ops_app, access_log=None, handle_signals=False)
    await ops_runner.setup()
    try:
        await web.TCPSite(ops_runner, host, settings.ops_port).start()
    except OSError as exc:
        await ops_runner.cleanup()
        raise _CannotListen("WHARF_OPS_PORT", host, settings.ops_port, exc) from exc
    return port, ops_runner


def _tune_garbage_collector(threshold: int) -> None:
    """Keep the cyclic garbage collector off the message path of a long-lived service.

    Everything built at startup (modules, models, adapters, connections)
    lives as long as the process, yet with the interpreter's defaults every
    full collection walks it again: dozens of milliseconds each, several a
    second under load. Freezing moves those objects out of the collector's
    sight, and a larger young generation lets the short-lived objects of
    each message die by reference counting before a collection comes round.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)


async def serve(spec: ServiceSpec, settings: ServiceSettings) -> int:
    """Run a service until SIGTERM or SIGINT; return the exit code."""
    rt = Runtime(spec, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stopping.set)

    from wharf_common import __version__ as common_version

    logger.info(
        "starting %s %s (wharf-common %s)",
        spec.name,
        spec.version,
        common_version,
        extra={"settings": settings.public_dump()},
    )
    rt.app.add_routes(_probe_routes())
    await spec.setup(rt)
    if settings.queue_metrics:
        held = rt.held_backlog if spec.backlog_query else None
        rt.add_task("queue-metrics", functools.partial(publish_forever, settings, spec.name, held))

    runner = web.AppRunner(rt.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        port, ops_runner = await _listen(rt, runner, settings)
    except _CannotListen as exc:
        logger.error("%s cannot start: %s", spec.name, exc)
        await runner.cleanup()
        await rt.close()
        return 1

    code = 0
    try:
        await rt.connect()
        await rt.start_work()
        logger.info(
            "%s ready in %.2f s on port %d", spec.name, time.monotonic() - rt.started_at, port
        )
        await rt.stopping.wait()
        logger.info("stopping %s: draining in-flight work", spec.name)
        await rt.drain()
    except StartupError as exc:
        logger.error("%s cannot start: %s", spec.name, exc)
        code = 1
    except Exception:
        if not rt.stopping.is_set():
            logger.exception("%s failed", spec.name)
            code = 1
    finally:
        await runner.shutdown()
        await runner.cleanup()
        if ops_runner is not None:
            await ops_runner.cleanup()
        await rt.close()
    logger.info("%s stopped", spec.name)
    return code


def main(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """Entry point for a service's `__main__`: configure logging and run."""
    logs.configure_logging(spec.name, settings.log_level)
    sys.exit(asyncio.run(serve(spec, settings)))
