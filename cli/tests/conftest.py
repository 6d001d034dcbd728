"""Fixtures for the wharf command's tests: a fake service, an isolated WHARF_HOME."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wharf_cli.home import Home
from wharf_cli.services import ServiceSpec
from wharf_cli.supervisor import Supervisor, SupervisorOptions

FAKE_SERVICE = Path(__file__).with_name("fake_service.py")

FAST = SupervisorOptions(
    stop_timeout=5.0, probe_interval=0.1, probe_timeout=0.5, backoff_base=0.1, kill_grace=0.5
)


def _fake_spec(name: str, *, default_tasks: int = 1, shared: bool = False) -> ServiceSpec:
    command = (sys.executable, str(FAKE_SERVICE))
    return ServiceSpec(name, default_tasks=default_tasks, shared_http_port=shared, command=command)


@pytest.fixture
def fake_spec() -> Callable[..., ServiceSpec]:
    """Make a service whose tasks run fake_service.py."""
    return _fake_spec


@pytest.fixture
def fast() -> SupervisorOptions:
    """Supervisor timings short enough for tests."""
    return FAST


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A fresh WHARF_HOME."""
    return Home(tmp_path / "wharf")


@pytest.fixture
async def make_supervisor(home: Home) -> AsyncIterator[Callable[..., Supervisor]]:
    """Build supervisors over fake services; every one is stopped afterwards."""
    made: list[Supervisor] = []

    def make(
        specs: list[ServiceSpec],
        *,
        counts: dict[str, int] | None = None,
        env: dict[str, str] | None = None,
        options: SupervisorOptions = FAST,
    ) -> Supervisor:
        supervisor = Supervisor(specs, home, counts=counts, env=env, options=options)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        await supervisor.stop()
