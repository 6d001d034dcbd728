"""The ``wharf`` command: up, scale, status and down for the stack on one machine; dlq, demo."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from wharf_cli import demo, demo_ftp, dlq
from wharf_cli.autoscale import Autoscaler, Limits, Policy
from wharf_cli.backend import BackendConfigError, BackendError, ServiceState
from wharf_cli.backends import BACKENDS, open_backend
from wharf_cli.local import LocalBackend, NotRunningError, read_info
from wharf_cli.output import status_json, status_table
from wharf_cli.preflight import database_name, preflight
from wharf_cli.services import ServiceSpec, load_services
from wharf_cli.settings import CliSettings
from wharf_cli.stack import print_table, run_detached, run_foreground, stack_depths
from wharf_common.queues import vhost_of

_Command = Callable[
    [argparse.Namespace, CliSettings, Sequence[ServiceSpec]], Coroutine[Any, Any, int]
]


class UsageError(Exception):
    """A mistake in the command line; the message says which."""


def _parse_counts(pairs: Sequence[str], specs: Sequence[ServiceSpec]) -> dict[str, int]:
    known = {spec.name for spec in specs}
    counts: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value.isdigit():
            raise UsageError(f"--tasks takes SERVICE=N, not {pair!r}")
        if name not in known:
            raise UsageError(f"unknown service {name!r} (known: {', '.join(sorted(known))})")
        counts[name] = int(value)
    return counts


def _positive(text: str) -> float:
    """A number of seconds above zero, for argparse."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _non_negative(text: str) -> float:
    """A number of seconds of zero or more, for argparse."""
    value = _seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, not {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text}")
    return value


def _runnable(module: str) -> bool:
    # Looks for the package's __main__.py without importing the package.
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    locations = spec.submodule_search_locations or []
    return any((Path(location) / "__main__.py").is_file() for location in locations)


def _not_installed(specs: Sequence[ServiceSpec], counts: dict[str, int]) -> list[ServiceSpec]:
    return [
        spec
        for spec in specs
        if not spec.command
        and counts.get(spec.name, spec.default_tasks) > 0
        and not _runnable(spec.module)
    ]


async def _up(args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]) -> int:
    counts = _parse_counts(args.tasks, specs)
    ready_timeout = settings.ready_timeout if args.timeout is None else args.timeout
    if args.supervisor:
        return await run_foreground(
            settings, specs, counts, ready_timeout=ready_timeout, announce=False
        )

    backend = LocalBackend(settings.wharf_home)
    try:
        running = await backend.running()
    finally:
        await backend.close()
    if running and args.demo:
        print("a Wharf stack is already running here; running the demo against it")
        return await _run_demo(args, settings)
    if running:
        info = read_info(settings.wharf_home)
        pid = info.pid if info else "?"
        print(
            f"a Wharf stack is already running here (supervisor pid {pid});"
            " see wharf status, or stop it with wharf down",
            file=sys.stderr,
        )
        return 1

    missing = _not_installed(specs, counts)
    if missing:
        names = ", ".join(f"{spec.name} ({spec.module})" for spec in missing)
        print(
            f"not installed or without a __main__: {names}\n"
            "  ./wharf installs every service under services/;"
            " leave one out with --tasks NAME=0",
            file=sys.stderr,
        )
        return 1

    info = read_info(settings.wharf_home)
    own_stack_running = info is not None and _alive(info.pid)
    problems, created = await preflight(
        settings.amqp_url,
        settings.management_url,
        settings.database_url,
        check_others=not own_stack_running,
    )
    if problems:
        print("\n\n".join(problem.render() for problem in problems), file=sys.stderr)
        return 1
    if created:
        print(f"created database {database_name(settings.database_url)}")

    if args.demo:
        # The demo's FTP server must be known to carrier-ingest before it starts.
        os.environ.setdefault("WHARF_CARRIER_FTP", demo_ftp.default_config().setting())
    if args.detach or args.demo:
        code = await run_detached(settings, counts, ready_timeout=ready_timeout)
        if code != 0 or not args.demo:
            return code
        return await _run_demo(args, settings)
    return await run_foreground(settings, specs, counts, ready_timeout=ready_timeout, announce=True)


async def _run_demo(args: argparse.Namespace, settings: CliSettings) -> int:
    options = demo.DemoOptions(url=settings.public_url, carriers=args.carriers)
    code = await demo.run(options)
    home = settings.wharf_home
    print(
        f"\nThe stack keeps running: the API at {settings.public_url}"
        f" ({settings.public_url}/openapi.json), task logs in {home.logs}.\n"
        "See it with `wharf status`, run the demo again with `wharf demo`,"
        " stop it with `wharf down`."
    )
    return code


async def _demo(
    args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]
) -> int:
    options = demo.DemoOptions(url=settings.public_url, carriers=args.carriers)
    return await demo.run(options)


async def _wait_settled(backend: LocalBackend, service: str, within: float) -> ServiceState:
    deadline = time.monotonic() + within
    while True:
        state = next(state for state in await backend.status() if state.name == service)
        if state.settled or time.monotonic() >= deadline:
            return state
        await asyncio.sleep(0.2)


def _check_count(name: str, count: int, specs: Sequence[ServiceSpec], *, force: bool) -> None:
    if count < 0:
        raise UsageError(f"a task count cannot be negative, not {count}")
    spec = next((spec for spec in specs if spec.name == name), None)
    if spec is None or force:
        return
    low, high = spec.task_range()
    if not low <= count <= high:
        raise UsageError(
            f"{name} runs {low} to {high} tasks (min_tasks and max_tasks of the services"
            f" table); add --force to run {count} anyway"
        )


async def _scale(
    args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]
) -> int:
    if args.count is None and not args.release:
        raise UsageError("scale takes SERVICE N, or SERVICE --release")
    if args.count is not None and args.release:
        raise UsageError("scale takes a count or --release, not both")
    if args.force and args.count is None:
        raise UsageError("--force goes with a count")
    if args.count is not None:
        _check_count(args.service, args.count, specs, force=args.force)
    kind = args.backend or settings.backend
    backend = open_backend(settings, [spec.name for spec in specs], kind)
    try:
        if args.release:
            state = await backend.release(args.service)
        else:
            state = await backend.scale(args.service, args.count)
        if kind == "local" and not args.no_wait and isinstance(backend, LocalBackend):
            # Scaling in waits for surplus tasks to drain, which may take their stop timeout.
            within = max(settings.ready_timeout, settings.stop_timeout + 10)
            state = await _wait_settled(backend, args.service, within)
    finally:
        await backend.close()
    await print_table([state], settings)
    if kind == "local" and not args.no_wait and not state.settled:
        print(f"{args.service} has not settled yet; see wharf status", file=sys.stderr)
        return 1
    return 0


async def _status(
    args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]
) -> int:
    kind = args.backend or settings.backend
    backend = open_backend(settings, [spec.name for spec in specs], kind)
    try:
        states = await backend.status()
    finally:
        await backend.close()
    names = [state.name for state in states]
    depths = await stack_depths(settings, names)
    if args.json:
        print(status_json(states, depths, backend=kind))
    else:
        print(status_table(states, depths))
    return 0


# The stack's only entrance: at zero tasks every request is refused until someone
# scales it up again, so no autoscaling bound may allow that, even with --force.
_ALWAYS_RUNNING = frozenset({"gateway"})


def _limits(
    pairs: Sequence[str], specs: Sequence[ServiceSpec], *, force: bool = False
) -> dict[str, Limits]:
    limits = {
        spec.name: Limits(spec.min_tasks, spec.max_tasks)
        for spec in specs
        if spec.max_tasks is not None
    }
    by_name = {spec.name: spec for spec in specs}
    for pair in pairs:
        name, sep, bounds = pair.partition("=")
        low, colon, high = bounds.partition(":")
        if not sep or not colon or not low.isdigit() or not high.isdigit():
            raise UsageError(f"--limits takes SERVICE=MIN:MAX, not {pair!r}")
        if name not in by_name:
            raise UsageError(f"unknown service {name!r} (known: {', '.join(sorted(by_name))})")
        try:
            limits[name] = Limits(int(low), int(high))
        except ValueError as exc:
            raise UsageError(f"{exc}: MIN must not exceed MAX") from exc
        _check_limits(by_name[name], limits[name], force=force)
    return limits


def _check_limits(spec: ServiceSpec, limits: Limits, *, force: bool) -> None:
    if spec.name in _ALWAYS_RUNNING and limits.min_tasks < 1:
        raise UsageError(f"{spec.name} always runs at least 1 task; give a MIN of 1 or more")
    low, high = spec.task_range()
    if force or (low <= limits.min_tasks and limits.max_tasks <= high):
        return
    raise UsageError(
        f"{spec.name} runs {low} to {high} tasks (min_tasks and max_tasks of the services"
        f" table), not {limits.min_tasks}:{limits.max_tasks}; add --force to allow it anyway"
    )


async def _autoscale(
    args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]
) -> int:
    limits = _limits(args.limits, specs, force=args.force)
    if not limits:
        raise UsageError("no service to autoscale: give --limits SERVICE=MIN:MAX")
    policy = Policy(target_seconds=args.target_seconds, cooldown=args.cooldown)
    backend = open_backend(settings, [spec.name for spec in specs], args.backend)
    scaler = Autoscaler(
        backend,
        limits,
        settings.management_url,
        vhost=vhost_of(settings.amqp_url),
        policy=policy,
        database_url=settings.database_url,
        backlog_queries={spec.name: spec.backlog_query for spec in specs if spec.backlog_query},
    )
    try:
        if args.once:
            for service, decision in (await scaler.step()).items():
                print(f"{service}: {decision.count} ({decision.reason})")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        names = ", ".join(
            f"{name} {lim.min_tasks}..{lim.max_tasks}" for name, lim in limits.items()
        )
        print(f"autoscaling {names} every {args.interval:g}s; Ctrl-C stops", flush=True)
        await scaler.run(args.interval, stop)
    finally:
        await backend.close()
    return 0


async def _down(
    args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]
) -> int:
    home = settings.wharf_home
    backend = LocalBackend(home)
    try:
        await backend.stop()
    except NotRunningError:
        print("no Wharf stack is running")
        return 0
    finally:
        await backend.close()

    print(f"stopping: draining tasks (up to {settings.stop_timeout:g}s)", flush=True)
    info = read_info(home)
    deadline = time.monotonic() + settings.stop_timeout + 15
    while info is not None and time.monotonic() < deadline:
        if info.pid != os.getpid() and not _alive(info.pid):
            break
        await asyncio.sleep(0.2)
        info = read_info(home)
    if info is not None and _alive(info.pid) and info.pid != os.getpid():
        print(f"the supervisor (pid {info.pid}) is still stopping", file=sys.stderr)
        return 1
    print("stopped")
    return 0


async def _dlq(
    args: argparse.Namespace, settings: CliSettings, specs: Sequence[ServiceSpec]
) -> int:
    return await dlq.run(args, settings.amqp_url)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``wharf``."""
    parser = argparse.ArgumentParser(
        prog="wharf", description="Run Wharf on this machine, scale it and see its status."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start every service as local processes")
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument(
        "--tasks",
        nargs="+",
        action="extend",
        default=[],
        metavar="SERVICE=N",
        help="task count of a service (default 1 each)",
    )
    up.add_argument("--timeout", type=_positive, help="seconds to wait for every task to be ready")
    up.add_argument(
        "--demo",
        action="store_true",
        help="start in the background, wait until ready, then run `wharf demo`",
    )
    up.add_argument("--carriers", type=Path, metavar="DIR", help="with --demo: see wharf demo")
    up.add_argument("--supervisor", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(handler=_up)

    run_demo = commands.add_parser(
        "demo", help="run the main job against the running stack (WHARF_PUBLIC_URL)"
    )
    run_demo.add_argument(
        "--carriers",
        type=Path,
        metavar="DIR",
        help="post every file of DIR whose name names a carrier format, instead of the examples",
    )
    run_demo.set_defaults(handler=_demo)

    backend_help = "where the services run (default: WHARF_BACKEND, else local)"
    scale = commands.add_parser(
        "scale", help="set a service's task count, pinning its autoscaler; --release undoes it"
    )
    scale.add_argument("service")
    scale.add_argument("count", type=int, nargs="?")
    scale.add_argument("--release", action="store_true", help="hand back to the autoscaler")
    scale.add_argument(
        "--force",
        action="store_true",
        help="set a count outside the service's min_tasks..max_tasks (0 stops it)",
    )
    scale.add_argument("--no-wait", action="store_true", help="return without waiting")
    scale.add_argument("--backend", choices=BACKENDS, help=backend_help)
    scale.set_defaults(handler=_scale)

    status = commands.add_parser("status", help="task counts, health and queue depth")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--backend", choices=BACKENDS, help=backend_help)
    status.set_defaults(handler=_status)

    autoscale = commands.add_parser(
        "autoscale", help="set task counts from queue depth and throughput, until stopped"
    )
    autoscale.add_argument(
        "--limits",
        nargs="+",
        action="extend",
        default=[],
        metavar="SERVICE=MIN:MAX",
        help="services to scale and their bounds (default: documents and carrier-ingest)",
    )
    autoscale.add_argument(
        "--force",
        action="store_true",
        help="allow --limits outside a service's min_tasks..max_tasks (the gateway keeps 1)",
    )
    autoscale.add_argument(
        "--interval", type=_positive, default=15.0, help="seconds between rounds"
    )
    autoscale.add_argument(
        "--target-seconds", type=_positive, default=60.0, help="drain a backlog within this long"
    )
    autoscale.add_argument(
        "--cooldown",
        type=_non_negative,
        default=120.0,
        help="seconds after a change before scaling in",
    )
    autoscale.add_argument("--once", action="store_true", help="one round, then exit")
    autoscale.add_argument("--backend", choices=BACKENDS, help=backend_help)
    autoscale.set_defaults(handler=_autoscale)

    down = commands.add_parser("down", help="stop the stack, draining every task")
    down.set_defaults(handler=_down)

    dlq.add_parser(commands)
    commands.choices["dlq"].set_defaults(handler=_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``wharf`` command; the exit code is 0 on success."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    level = logging.INFO if args.command == "up" else logging.WARNING
    logging.getLogger("wharf_cli").setLevel(logging.DEBUG if args.verbose else level)
    try:
        settings = CliSettings()
        specs = load_services(settings.services_file)
    except (ValidationError, OSError, TypeError, ValueError) as exc:
        print(f"wharf: bad configuration: {exc}", file=sys.stderr)
        return 2

    handler: _Command = args.handler
    try:
        return asyncio.run(handler(args, settings, specs))
    except (UsageError, BackendConfigError) as exc:
        print(f"wharf: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:
        print(f"wharf: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        # Missing credentials, an unknown cluster, an unreachable endpoint:
        # botocore's message says which, and a traceback adds nothing.
        print(f"wharf: AWS: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`wharf status | head`): not an error of ours.
        sys.stderr.close()
        return 0
