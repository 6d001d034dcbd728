"""Benchmark: an authenticated GET through the gateway, RPC to a service and back.

Not a test. Starts auth, carrier-ingest and the gateway as processes (as
``wharf up`` would) on a throwaway vhost, database and folder, plus a bare
aiohttp handler in a process of its own, and measures each at a fixed
request rate on loopback. The schedule is open-loop: request i is due at
start + i / rate whatever happened before it, and its latency counts from
when it was due, so a stall is not hidden by the requests it delayed. The
login path (argon2id at the service's default cost) is measured on its own,
at a lower rate. Sizes come from flags or, for each flag, its variable:

    .venv/bin/python services/gateway/bench.py --rate 300 --seconds 10 --login-rate 10
    WHARF_BENCH_RATE=300 .venv/bin/python services/gateway/bench.py

The servers are those the tests use (WHARF_TEST_DATABASE_URL,
WHARF_TEST_MANAGEMENT_URL, WHARF_TEST_AMQP_HOST, WHARF_TEST_REDIS_URL). The
vhost, database and Redis keys it creates are removed at the end, also when
it is stopped with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import redis.asyncio as redis
from aiohttp import web

DATABASE = os.environ.get(
    "WHARF_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MANAGEMENT = os.environ.get("WHARF_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
AMQP_HOST = os.environ.get("WHARF_TEST_AMQP_HOST", "guest:guest@127.0.0.1:5672")
REDIS = os.environ.get("WHARF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "correct horse battery staple"
SERVICES = ("auth", "carrier_ingest", "gateway")


@dataclass
class Result:
    """Latencies of one open-loop run, in seconds, and how fast answers came."""

    latencies: list[float]
    failures: int
    achieved: float

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p50 = statistics.median(ms)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return f"p50={p50:.2f}ms p99={p99:.2f}ms rps={self.achieved:.0f} failed={self.failures}"

    def p(self, q: float) -> float:
        ms = sorted(x * 1000 for x in self.latencies)
        return ms[min(len(ms) - 1, int(len(ms) * q))]


async def open_loop(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    rate: float,
    seconds: float,
    expect: int = 200,
    **request: Any,
) -> Result:
    """Send `rate` requests a second for `seconds`, each due at its own time."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    start = loop.time() + 0.1
    latencies: list[float] = []
    failures = 0
    finished = start

    async def one(due: float) -> None:
        nonlocal failures, finished
        await asyncio.sleep(due - loop.time())
        try:
            async with http.request(method, url, **request) as response:
                await response.read()
                ok = response.status == expect
        except (aiohttp.ClientError, TimeoutError):
            ok = False  # counted as a failure, like a wrong status
        finished = loop.time()
        if ok:
            latencies.append(finished - due)
        else:
            failures += 1

    await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    return Result(latencies, failures, count / (finished - start))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_bare(port: int) -> None:
    """A bare aiohttp handler answering a small JSON body, for the ratio."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"id": "x", "status": "in_transit"})

    app = web.Application()
    app.router.add_get("/", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def wait_ready(
    http: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes]
) -> None:
    async with asyncio.timeout(60):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)


async def prepare(http: aiohttp.ClientSession, gateway: str) -> tuple[dict[str, str], str]:
    """A tenant, its admin's access token, and a shipment to read."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    tenant = {"name": "Bench", "admin_email": email, "admin_password": PASSWORD}
    async with http.post(f"{gateway}/v1/tenants", json=tenant) as response:
        assert response.status == 201, await response.text()
    login = {"email": email, "password": PASSWORD}
    async with http.post(f"{gateway}/v1/auth/token", json=login) as response:
        assert response.status == 200, await response.text()
        headers = {"Authorization": f"Bearer {(await response.json())['access_token']}"}
    shipment = {"carrier": "fedex", "tracking_number": "700000000001"}
    async with http.post(f"{gateway}/v1/shipments", json=shipment, headers=headers) as response:
        assert response.status == 201, await response.text()
        shipment_id = (await response.json())["id"]
    return {**headers, "X-Login": email}, shipment_id


def parser() -> argparse.ArgumentParser:
    """The command line: sizes, each defaulting to its environment variable."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    def size(flag: str, variable: str, default: str, what: str) -> None:
        parser.add_argument(
            flag,
            type=float,
            default=float(os.environ.get(variable, default)),
            help=f"{what} ({variable}; default %(default)g)",
        )

    size("--rate", "WHARF_BENCH_RATE", "300", "authenticated GETs a second")
    size("--seconds", "WHARF_BENCH_SECONDS", "10", "seconds of GETs")
    size("--login-rate", "WHARF_BENCH_LOGIN_RATE", "10", "logins a second")
    size("--login-seconds", "WHARF_BENCH_LOGIN_SECONDS", "5", "seconds of logins")
    # The bare handler runs in a process of its own, started by this script.
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def spawn(logs: Path, env: dict[str, str], ports: dict[str, int]) -> dict[str, Any]:
    """Start each service, its log in `logs`, and the bare handler, as processes."""
    logs.mkdir()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name in SERVICES:
        with open(logs / f"{name}.log", "wb") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"wharf_{name}"],
                env={**env, "WHARF_HTTP_PORT": str(ports[name])},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    processes["bare"] = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", str(ports["bare"])], env=env
    )
    return processes


async def measure(
    args: argparse.Namespace, folder: Path, amqp_url: str, database_url: str, prefix: str
) -> None:
    rate, seconds = args.rate, args.seconds
    ports = {name: free_port() for name in (*SERVICES, "bare")}
    env = {
        **os.environ,
        "WHARF_AMQP_URL": amqp_url,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_STORAGE_URL": f"file://{folder}/objects",
        "WHARF_HOME": str(folder / "home"),
        "WHARF_HTTP_HOST": "127.0.0.1",
        "WHARF_LOG_TO_BUS": "false",
        "WHARF_RATE_LIMIT_PREFIX": prefix,
        "WHARF_RATE_LIMIT_PER_SECOND": "100000",
        "WHARF_RATE_LIMIT_BURST": "100000",
        "WHARF_ANONYMOUS_PER_SECOND": "100000",
        "WHARF_ANONYMOUS_BURST": "100000",
        "WHARF_THROTTLE_ADDRESS_FREE": "100000",
    }
    processes = spawn(folder / "logs", env, ports)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for name in SERVICES:
                url = f"http://127.0.0.1:{ports[name]}/readyz"
                await wait_ready(http, url, processes[name])
            bare = f"http://127.0.0.1:{ports['bare']}/"
            await wait_ready(http, bare, processes["bare"])
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            headers, shipment_id = await prepare(http, gateway)
            email = headers.pop("X-Login")
            read = f"{gateway}/v1/shipments/{shipment_id}"

            await open_loop(http, "GET", bare, rate, 1)
            await open_loop(http, "GET", read, rate, 1, headers=headers)
            base = await open_loop(http, "GET", bare, rate, seconds)
            through = await open_loop(http, "GET", read, rate, seconds, headers=headers)
            login = await open_loop(
                http,
                "POST",
                f"{gateway}/v1/auth/token",
                args.login_rate,
                args.login_seconds,
                json={"email": email, "password": PASSWORD},
            )
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    cores = len(os.sched_getaffinity(0))
    print(f"cores: {cores}, rate: {rate:.0f}/s for {seconds:.0f} s, open loop")
    print(f"bare aiohttp GET:              {base.line()}")
    print(f"gateway GET /v1/shipments/{{id}}: {through.line()}")
    print(f"login POST /v1/auth/token at {args.login_rate:.0f}/s: {login.line()}")
    ratio = statistics.median(through.latencies) / statistics.median(base.latencies)
    print(
        f"SUMMARY get p50={through.p(0.5):.2f}ms (target 5) p99={through.p(0.99):.2f}ms"
        f" (target 25) rps={through.achieved:.0f}/{rate:.0f} bare p50={base.p(0.5):.2f}ms"
        f" ratio={ratio:.1f} login p50={login.p(0.5):.1f}ms p99={login.p(0.99):.1f}ms"
    )


async def main(args: argparse.Namespace) -> None:
    vhost = quote(f"wharf-bench-{uuid.uuid4().hex[:8]}", safe="")
    api = MANAGEMENT.rstrip("/") + "/api"
    name = f"wharf_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"wharf-bench:{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(DATABASE)
    database_url = urlunsplit(urlsplit(DATABASE)._replace(path=f"/{name}"))
    client = redis.Redis.from_url(REDIS)
    async with aiohttp.ClientSession() as http:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            (await http.put(f"{api}/vhosts/{vhost}")).raise_for_status()
            permissions = {"configure": ".*", "write": ".*", "read": ".*"}
            grant = await http.put(f"{api}/permissions/{vhost}/guest", json=permissions)
            grant.raise_for_status()
            with tempfile.TemporaryDirectory() as folder:
                amqp_url = f"amqp://{AMQP_HOST}/{vhost}"
                await measure(args, Path(folder), amqp_url, database_url, prefix)
        finally:
            await http.delete(f"{api}/vhosts/{vhost}")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            keys = [key async for key in client.scan_iter(f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


if __name__ == "__main__":
    arguments = parser().parse_args()
    if arguments.serve_bare is not None:
        serve_bare(arguments.serve_bare)
        sys.exit()
    # SIGTERM stops the run as Ctrl-C does, so the cleanup above still runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        sys.exit("gateway bench: stopped before the end; its vhost and database are removed")
