"""The local backend: the supervisor's control API, its server and its client.

The supervisor serves a small HTTP API on a unix socket,
``$WHARF_HOME/run/control.sock`` (on 127.0.0.1 and a free port when that path
is too long for a socket). ``run/supervisor.json`` records its pid and address.

    GET  /status                  every service: desired count and tasks
    PUT  /services/{name}/tasks   {"count": N}: set a desired count
    POST /stop                    drain every task and exit
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from wharf_cli.backend import Backend, BackendError, ServiceState
from wharf_cli.home import Home
from wharf_cli.supervisor import Supervisor

logger = logging.getLogger(__name__)

# sun_path holds 108 bytes on Linux, the terminating NUL included.
_MAX_SOCKET_PATH = 100

_SUPERVISOR = web.AppKey("supervisor", Supervisor)
_STOP = web.AppKey("stop", asyncio.Event)
_STATES = TypeAdapter(list[ServiceState])


class _ScaleRequest(BaseModel):
    count: int


@dataclass(frozen=True)
class SupervisorInfo:
    """What ``run/supervisor.json`` says about the running supervisor."""

    pid: int
    address: str


class NotRunningError(BackendError):
    """No supervisor answers for this WHARF_HOME."""


def read_info(home: Home) -> SupervisorInfo | None:
    """The recorded supervisor, or None when there is no record."""
    try:
        data = json.loads(home.supervisor_file.read_text())
        return SupervisorInfo(pid=int(data["pid"]), address=str(data["address"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def create_control_app(supervisor: Supervisor, stop: asyncio.Event) -> web.Application:
    """The control API over `supervisor`; POST /stop sets `stop`."""
    app = web.Application()
    app[_SUPERVISOR] = supervisor
    app[_STOP] = stop
    app.router.add_get("/status", _status)
    app.router.add_put("/services/{name}/tasks", _scale)
    app.router.add_post("/stop", _stop)
    return app


async def _status(request: web.Request) -> web.Response:
    states = request.app[_SUPERVISOR].status()
    return web.json_response(text=_STATES.dump_json(states).decode())


async def _scale(request: web.Request) -> web.Response:
    try:
        body = _ScaleRequest.model_validate_json(await request.read())
        state = request.app[_SUPERVISOR].set_desired(request.match_info["name"], body.count)
    except (ValidationError, ValueError) as exc:
        return web.json_response({"detail": str(exc)}, status=400)
    return web.json_response(text=state.model_dump_json())


async def _stop(request: web.Request) -> web.Response:
    request.app[_STOP].set()
    return web.json_response({"detail": "stopping"}, status=202)


class ControlServer:
    """Serves the control API and records where, for the clients."""

    def __init__(self, supervisor: Supervisor, home: Home, stop: asyncio.Event) -> None:
        self._home = home
        self._runner = web.AppRunner(create_control_app(supervisor, stop), access_log=None)

    async def start(self) -> str:
        """Listen, write ``run/supervisor.json`` and return the address."""
        self._home.run.mkdir(parents=True, exist_ok=True)
        await self._runner.setup()
        path = self._home.control_socket
        site: web.BaseSite
        if len(str(path).encode()) <= _MAX_SOCKET_PATH:
            path.unlink(missing_ok=True)
            site = web.UnixSite(self._runner, str(path))
            address = f"unix:{path}"
        else:
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        if isinstance(site, web.TCPSite):
            port = self._runner.addresses[0][1]
            address = f"http://127.0.0.1:{port}"
        record = {"pid": os.getpid(), "address": address}
        partial = self._home.supervisor_file.with_suffix(".tmp")
        partial.write_text(json.dumps(record))
        partial.replace(self._home.supervisor_file)
        logger.debug("control API on %s", address)
        return address

    async def close(self) -> None:
        """Stop serving and remove the record."""
        await self._runner.cleanup()
        self._home.supervisor_file.unlink(missing_ok=True)
        self._home.control_socket.unlink(missing_ok=True)


class LocalBackend(Backend):
    """Scale and status of the ``wharf up`` stack, through its control API."""

    def __init__(self, home: Home, *, timeout: float = 10.0) -> None:
        self._home = home
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._base = ""

    def _connect(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        info = read_info(self._home)
        if info is None:
            raise NotRunningError(f"no Wharf stack is running (nothing in {self._home.run})")
        connector: aiohttp.BaseConnector
        if info.address.startswith("unix:"):
            connector = aiohttp.UnixConnector(path=info.address.removeprefix("unix:"))
            self._base = "http://wharf"
        else:
            connector = aiohttp.TCPConnector()
            self._base = info.address
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        session = self._connect()
        try:
            async with session.request(method, self._base + path, json=body) as response:
                data = await response.json()
                if response.status >= 400:
                    raise BackendError(str(data.get("detail", data)))
                return data
        except (aiohttp.ClientConnectionError, FileNotFoundError) as exc:
            raise NotRunningError(f"no Wharf stack is running ({exc})") from exc

    async def status(self) -> list[ServiceState]:
        """Every service's desired count and tasks, from the supervisor."""
        return _STATES.validate_python(await self._request("GET", "/status"))

    async def scale(self, service: str, count: int) -> ServiceState:
        """Ask the supervisor for `count` tasks of `service`."""
        data = await self._request("PUT", f"/services/{service}/tasks", {"count": count})
        return ServiceState.model_validate(data)

    async def stop(self) -> None:
        """Ask the supervisor to drain every task and exit."""
        await self._request("POST", "/stop")

    async def running(self) -> bool:
        """True when a supervisor answers."""
        try:
            await self.status()
        except NotRunningError:
            return False
        return True

    async def close(self) -> None:
        """Close the connection to the supervisor."""
        if self._session is not None:
            await self._session.close()
            self._session = None
