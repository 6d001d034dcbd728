from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import TransferEncodingError
from aiohttp.test_utils import TestServer

from wharf_common.errors import TooManyRequests, client_error_from
from wharf_common.http import error_response, problem, request_middleware


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def relayed(request: web.Request) -> web.StreamResponse:
        raise client_error_from(429, "busy", {"retry_after": 7.4})

    async def bare(request: web.Request) -> web.StreamResponse:
        return problem(429, "Too Many Requests", "slow down")

    async def aiohttp_own(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTooManyRequests()

    async def limited(request: web.Request) -> web.StreamResponse:
        raise TooManyRequests("rate limit exceeded", retry_after=0.2)

    app = web.Application(middlewares=[request_middleware])
    app.router.add_get("/relayed", relayed)
    app.router.add_get("/bare", bare)
    app.router.add_get("/aiohttp", aiohttp_own)
    app.router.add_get("/limited", limited)
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield str(test_server.make_url("")).rstrip("/")


async def test_every_429_says_when_to_retry(server: str) -> None:
    expected = {"/relayed": "7", "/bare": "1", "/aiohttp": "1", "/limited": "1"}
    answers = {}
    async with aiohttp.ClientSession() as http:
        for path in expected:
            async with http.get(f"{server}{path}") as response:
                assert response.status == 429
                assert response.content_type == "application/problem+json"
                answers[path] = response.headers.get("Retry-After")
                # The body says the same, in whole seconds, for clients that read only JSON.
                assert (await response.json(content_type=None))["retry_after"] == int(
                    answers[path] or 0
                )

    assert answers == expected


def test_a_body_aiohttp_cannot_parse_is_a_400_that_does_not_repeat_it() -> None:
    response = error_response(TransferEncodingError("Invalid chunk size: b'wk_marker-secret'"))

    assert response is not None and response.status == 400
    assert response.content_type == "application/problem+json"
    body = json.loads(response.text or "")
    assert body["type"] == "about:blank"
    assert "wk_marker-secret" not in body["detail"]
