"""Handlers of the routes for platform operators: log search, task counts and queue depths.

Task counts go through the same `Backend` as ``wharf scale`` and ``wharf status``
(wharf-cli, whose dependencies the gateway already has through wharf-common):
the local stack's supervisor, ECS or Kubernetes, as ``WHARF_BACKEND`` says.
A count must lie in the service's min_tasks..max_tasks, and the gateway, which
serves this API, keeps at least one task; only ``wharf scale --force`` at the
machine goes further.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wharf_cli.backend import BackendError, ServiceState
from wharf_cli.backends import open_backend
from wharf_cli.local import NotRunningError
from wharf_cli.services import load_services, service_table
from wharf_common.envelope import Envelope
from wharf_common.errors import NotFound, ServiceUnavailable, Unprocessable
from wharf_common.http import REQUEST_ID_KEY
from wharf_common.queues import queue_depths, vhost_of
from wharf_gateway.edge import Call, Edge
from wharf_gateway.routes import Handler, ServicePath, SetTaskCount

LOG_SINK_QUEUE = "wharf.log-sink.rpc"


def ops_handlers(edge: Edge) -> dict[str, Handler]:
    """Handlers of the ops routes, keyed by operation id."""

    async def search_logs(call: Call) -> web.StreamResponse:
        query: dict[str, Any] = (
            call.query.model_dump(mode="json", exclude_none=True) if call.query else {}
        )
        envelope = Envelope(
            type="logs.search",
            body=query,
            correlation_id=call.request[REQUEST_ID_KEY],
            deadline=call.deadline,
            tenant=call.principal.tenant if call.principal else None,
        )
        result = await edge.bus.call(LOG_SINK_QUEUE, envelope)
        return web.json_response(result)

    settings = edge.settings
    table = service_table(load_services(settings.services_file))
    services = list(table)

    def _unavailable(exc: BackendError) -> ServiceUnavailable:
        return ServiceUnavailable(f"the ops backend ({settings.backend}) is unavailable: {exc}")

    async def _depths(names: list[str]) -> dict[str, int] | None:
        return await queue_depths(settings.management_url, names, vhost_of(settings.amqp_url))

    def _check_count(name: str, count: int) -> None:
        low, high = table[name].task_range()
        if name == settings.service_name:
            # Without a gateway task nobody could reach this API to undo it.
            low = max(low, 1)
        if not low <= count <= high:
            raise Unprocessable(
                f"{name} runs {low} to {high} tasks, not {count}",
                extra={"min_tasks": low, "max_tasks": high},
            )

    async def list_services(call: Call) -> web.StreamResponse:
        backend = open_backend(settings, services)
        try:
            states = await backend.status()
        except BackendError as exc:
            raise _unavailable(exc) from exc
        finally:
            await backend.close()
        depths = await _depths([state.name for state in states])
        body = [_service(state, None if depths is None else depths.get(state.name, 0))
                for state in states]  # fmt: skip
        return web.json_response({"backend": settings.backend, "services": body})

    async def set_tasks(call: Call) -> web.StreamResponse:
        assert isinstance(call.path, ServicePath) and isinstance(call.body, SetTaskCount)
        name = call.path.name
        if name not in table:
            raise NotFound(f"no service {name!r}")
        _check_count(name, call.body.count)
        backend = open_backend(settings, services)
        try:
            state = await backend.scale(name, call.body.count)
        except NotRunningError as exc:
            raise _unavailable(exc) from exc
        except BackendError as exc:
            if "unknown service" in str(exc):
                raise NotFound(f"no service {name!r} runs on {settings.backend}") from exc
            raise _unavailable(exc) from exc
        finally:
            await backend.close()
        depths = await _depths([name])
        return web.json_response(_service(state, None if depths is None else depths.get(name, 0)))

    return {
        "get_logs": search_logs,
        "get_ops_services": list_services,
        "put_ops_services_name_tasks": set_tasks,
    }


def _service(state: ServiceState, depth: int | None) -> dict[str, Any]:
    return {
        "name": state.name,
        "desired": state.desired,
        "running": state.running,
        "ready": state.ready,
        "queue_depth": depth,
        "autoscaler": state.autoscaler,
        "pinned": state.pinned,
    }
