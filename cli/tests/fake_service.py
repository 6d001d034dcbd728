"""A stand-in service for the supervisor's tests: ops endpoints, and a clean exit on SIGTERM.

Serves /healthz, /readyz and /metrics on WHARF_OPS_PORT. FAKE_READY_AFTER
delays readiness (seconds); on SIGTERM it waits FAKE_DRAIN seconds, writes
``drained`` to its log and exits 0. With FAKE_IGNORE_SIGTERM=1 it never stops
by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from aiohttp import web


async def _serve() -> int:
    port = int(os.environ["WHARF_OPS_PORT"])
    ready_at = time.monotonic() + float(os.environ.get("FAKE_READY_AFTER", "0"))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(status=200 if time.monotonic() >= ready_at else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="fake_up 1\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http_port = os.environ.get("WHARF_HTTP_PORT")
    reuse_port = os.environ.get("WHARF_HTTP_REUSE_PORT")
    print(f"serving on {port}, http port {http_port}, reuse port {reuse_port}", flush=True)

    stop = asyncio.Event()
    if os.environ.get("FAKE_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await asyncio.sleep(float(os.environ.get("FAKE_DRAIN", "0")))
    await runner.cleanup()
    print("drained", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_serve()))
