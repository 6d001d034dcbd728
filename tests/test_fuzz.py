"""Requests generated from the gateway's OpenAPI document, with every service up.

Any 5xx is a bug, except 503 and 504: those are declared answers for a
dependency that is down or late (the ops routes answer 503 here, as no
supervisor runs). Each answer must also be one the document declares, in
the content type and shape it declares. ``WHARF_FUZZ_EXAMPLES`` sets the
examples per operation.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

# Imported at collection, not lazily deep inside a running test: pytest
# rewrites schemathesis's modules (it is a pytest plugin), and CPython 3.11
# can fail to compile this large module from a deep stack ("AST constructor
# recursion depth mismatch").
from schemathesis.specs.openapi import definitions  # noqa: F401

from wharf_gateway.routes import table

if TYPE_CHECKING:
    from tests.conftest import Platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DECLARED_5XX = {503, 504}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
ACCESS = {(route.method, route.path): route.access for route in table({})}


def examples() -> int:
    return int(os.environ.get("WHARF_FUZZ_EXAMPLES", "15"))


async def test_generated_requests_get_no_server_error(platform: Platform) -> None:
    tenant = await platform.tenant("fuzz-admin@example.com")
    ops_token = await platform.operator("fuzz-ops@example.com")
    headers = {
        "admin": tenant.bearer,
        "tenant": tenant.bearer,
        "carrier": tenant.key,
        "ops": {"Authorization": f"Bearer {ops_token}"},
        "public": {},
    }
    async with platform.http.get(f"{platform.url}/openapi.json") as response:
        document = await response.json()

    problems = await asyncio.to_thread(fuzz, document, platform.url, headers)

    assert not problems, "\n".join(problems)


def fuzz(document: dict[str, Any], url: str, headers: dict[str, dict[str, str]]) -> list[str]:
    """Run every operation's generated cases; return one line per problem found."""
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        access = ACCESS[(operation.method.upper(), operation.path)]
        run = hypothesis.settings(
            max_examples=examples(),
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(hypothesis.given(case=operation.as_strategy())(check_case))
        run(operation=operation, url=url, headers=headers[access], problems=problems)
    return problems


def check_case(
    case: schemathesis.Case,
    operation: Any,
    url: str,
    headers: dict[str, str],
    problems: list[str],
) -> None:
    response = case.call(base_url=url, headers=headers, timeout=30)
    label = f"{operation.method.upper()} {operation.path} -> {response.status_code}"
    if response.status_code >= 500 and response.status_code not in DECLARED_5XX:
        problems.append(f"{label}: {response.text[:300]}\n  {case.as_curl_command()}")
        return
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as exc:
        problems.append(f"{label}: {'; '.join(f.title for f in exc.exceptions)}")
    except AssertionError as exc:
        problems.append(f"{label}: {str(exc)[:300]}")
