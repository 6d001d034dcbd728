"""The gateway's request path: limits, credentials, validation, and the call behind.

Each request goes through the same steps, in order: body-size limit (413),
credential (401), role or scope (403), per-tenant rate limit (429), body and
path validation (415 for a body that is not JSON, 400 for one that does not
parse, 422 for invalid fields), then the route's handler with an absolute
deadline carried on the bus (504 when it passes, 503 when nobody answers).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from wharf_common import deadlines, logs, strictjson
from wharf_common.bus import Bus
from wharf_common.envelope import Envelope
from wharf_common.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from wharf_common.http import REQUEST_ID_KEY
from wharf_gateway.credentials import ApiKeyVerifier, Principal, TokenVerifier
from wharf_gateway.ratelimit import RateLimiter
from wharf_gateway.routes import Route
from wharf_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

AUTH_QUEUE = "wharf.auth.rpc"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_USER_ROLES = frozenset({"admin", "member"})
# PostgreSQL's text and jsonb hold no NUL character, and a lone surrogate is
# not UTF-8: no service could store either, so they never get past the edge.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# aiohttp decodes header bytes that are not UTF-8 to lone surrogates. The
# headers the gateway reads must be printable ASCII; only a credential or the
# Idempotency-Key travels on to a service.
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
_READ_HEADERS = ("Authorization", "X-API-Key", IDEMPOTENCY_KEY_HEADER)
IDEMPOTENCY_KEY_LIMIT = 255
_IDEMPOTENCY_KEY = re.compile(rf"^[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_LIMIT}}}$")


@dataclass
class Call:
    """One request as a handler sees it: validated inputs and a verified caller."""

    request: web.Request
    route: Route
    principal: Principal | None
    body: BaseModel | None
    path: BaseModel | None
    query: BaseModel | None
    deadline: Any

    @property
    def idempotency_key(self) -> str | None:
        """The request's Idempotency-Key; the edge has checked its form."""
        return self.request.headers.get(IDEMPOTENCY_KEY_HEADER)


class Edge:
    """Runs every public request through the gateway's checks to its handler."""

    def __init__(
        self,
        bus: Bus,
        settings: GatewaySettings,
        limiter: RateLimiter,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.limiter = limiter
        self.tokens = TokenVerifier(
            self._fetch_jwks,
            issuer=settings.issuer,
            leeway=settings.token_leeway,
            min_refetch=settings.jwks_min_refetch,
        )
        self.api_keys = ApiKeyVerifier(self._verify_api_key, ttl=settings.api_key_cache_seconds)

    async def call_auth(
        self, call: Call | None, type: str, data: dict[str, Any], **extra: Any
    ) -> Any:
        """Ask auth over RPC, carrying the caller, correlation id and deadline."""
        return await self.call_service(AUTH_QUEUE, call, type, data, **extra)

    async def call_service(
        self, queue: str, call: Call | None, type: str, data: dict[str, Any], **extra: Any
    ) -> Any:
        """Ask a service over RPC; its tenant is the verified caller's, never the body's."""
        envelope = Envelope(type=type, body={"data": data, **extra})
        if call is not None:
            envelope.correlation_id = call.request[REQUEST_ID_KEY]
            envelope.deadline = call.deadline
            if call.principal is not None:
                envelope.tenant = call.principal.tenant
                envelope.body["caller"] = call.principal.caller()
        return await self.bus.call(queue, envelope, timeout=self.settings.request_timeout)

    async def _fetch_jwks(self) -> Any:
        return await self.call_auth(None, "auth.jwks", {})

    async def _verify_api_key(self, key: str) -> Any:
        return await self.call_auth(None, "auth.verify_api_key", {"key": key})

    def handler(self, route: Route) -> Any:
        """The aiohttp handler that runs `route` through every check."""

        async def handle(request: web.Request) -> web.StreamResponse:
            deadline = deadlines.deadline_in(self.settings.request_timeout)
            if route.body is not None or route.content_type != "application/json":
                self._check_size(request, route)
            check_headers(request)
            principal = await self._authenticate(request, route)
            await self._limit(request, principal)
            check_text(dict(request.match_info))
            path = (
                route.path_params.model_validate(request.match_info) if route.path_params else None
            )
            check_text(dict(request.query))
            query = route.query.model_validate(dict(request.query)) if route.query else None
            if route.handler is None:
                raise ServiceUnavailable(f"the {route.service} service is not available yet")
            body = None
            if route.body is not None:
                data = await self._read_json(request)
                check_text(data)
                body = route.body.model_validate(data)
            call = Call(request, route, principal, body, path, query, deadline)
            return await route.handler(call)

        return handle

    def _check_size(self, request: web.Request, route: Route) -> None:
        limit = self.settings.max_body_size
        if route.content_type == "multipart/form-data":
            limit = self.settings.max_upload_size
        length = request.content_length
        if length is not None and length > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")

    async def _read_json(self, request: web.Request) -> Any:
        if request.body_exists:
            _check_json_type(request)
        limit = self.settings.max_body_size
        data = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        if not data:
            return {}
        return parse_json(data)

    async def _authenticate(self, request: web.Request, route: Route) -> Principal | None:
        if route.access == "public":
            return None
        principal = await self._credential(request)
        if principal is None:
            raise Unauthorized("this route needs an access token or an API key")
        # The runtime's access-log line is written after the handler returns, in
        # this same task: setting the tenant here puts it on that line too.
        logs.tenant.set(principal.tenant)
        if not _allowed(route, principal):
            raise Forbidden("the credential does not allow this operation")
        return principal

    async def _credential(self, request: web.Request) -> Principal | None:
        authorization = request.headers.get("Authorization", "")
        if authorization and "X-API-Key" in request.headers:
            raise BadRequest("send one credential: Authorization or X-API-Key, not both")
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return await self.tokens.verify(value)
        if scheme.lower() == "apikey" and value:
            return await self.api_keys.verify(value)
        if authorization:
            raise Unauthorized("unsupported Authorization scheme")
        key = request.headers.get("X-API-Key", "").strip()
        if key:
            return await self.api_keys.verify(key)
        return None

    async def _limit(self, request: web.Request, principal: Principal | None) -> None:
        s = self.settings
        if principal is None:
            bucket, rate, burst = (
                f"address:{request.remote}",
                s.anonymous_per_second,
                s.anonymous_burst,
            )
        else:
            bucket, rate, burst = (
                f"tenant:{principal.tenant}",
                s.rate_limit_per_second,
                s.rate_limit_burst,
            )
        decision = await self.limiter.take(bucket, rate=rate, burst=burst)
        if not decision.allowed:
            raise TooManyRequests("rate limit exceeded", retry_after=decision.retry_after)


def _allowed(route: Route, principal: Principal) -> bool:
    if route.access == "ops":
        return principal.kind == "user" and "ops" in principal.roles
    if route.access == "admin":
        return principal.kind == "user" and "admin" in principal.roles
    if principal.kind == "api_key":
        return any(scope in principal.scopes for scope in route.scopes)
    if route.access == "carrier":
        return False
    return bool(_USER_ROLES.intersection(principal.roles))


MAX_JSON_DEPTH = 32


def _check_json_type(request: web.Request) -> None:
    """Refuse a body that does not say it is JSON, rather than guess."""
    if "Content-Type" not in request.headers:
        raise UnsupportedMediaType("the body has no Content-Type; send it as application/json")
    media_type = request.content_type
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    if not is_json:
        raise UnsupportedMediaType(f"send the body as application/json, not {media_type[:100]}")
    if request.charset is not None and request.charset.lower() not in {"utf-8", "utf8"}:
        raise UnsupportedMediaType("a JSON body is UTF-8")


def parse_json(data: bytes | bytearray) -> Any:
    """Parse a JSON body strictly: no NaN or Infinity, and nested at most MAX_JSON_DEPTH."""
    try:
        value = strictjson.loads(data)
    except strictjson.NotJson as exc:
        raise BadRequest(f"the body {exc}") from None
    except RecursionError:
        # The parser itself gave up on the nesting, far past the limit.
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    """Refuse JSON nested deeper than any API needs; it only costs the services."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def check_headers(request: web.Request) -> None:
    """Refuse, with 400 naming it, a header the gateway reads that is not printable ASCII."""
    for name in _READ_HEADERS:
        value = request.headers.get(name)
        if value is not None and not _PRINTABLE.match(value):
            raise BadRequest(f"the {name} header must be printable ASCII")
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest(
            f"the {IDEMPOTENCY_KEY_HEADER} header must be 1 to {IDEMPOTENCY_KEY_LIMIT}"
            " printable ASCII characters"
        )


def check_text(value: Any) -> None:
    """Refuse, with 422 naming each field, text that no service can store."""
    fields = list(_unstorable(value, ()))
    if not fields:
        return
    message = "contains a NUL character or a lone surrogate"
    errors = [{"field": field, "message": message} for field in fields]
    raise Unprocessable(
        f"invalid fields: {', '.join(field or 'body' for field in fields)}",
        extra={"errors": errors},
    )


def _unstorable(value: Any, at: tuple[str, ...]) -> Iterator[str]:
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            yield ".".join(at)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _UNSTORABLE.search(key):
                yield ".".join((*at, key))
            else:
                yield from _unstorable(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, (*at, str(index)))
