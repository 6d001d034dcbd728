"""HTTP helpers shared by every service: problem+json errors and request ids."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from wharf_common.errors import (
    ClientError,
    DeadlineExceeded,
    ServiceUnavailable,
    TooManyRequests,
)
from wharf_common.logs import log_context

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUEST_ID_KEY = web.RequestKey("request_id", str)


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """Build an RFC 9457 application/problem+json response.

    A 429 always says when to retry, alike in its `Retry-After` header and in
    a `retry_after` member (whole seconds, at least 1), whichever was given.
    """
    if status == 429:
        given = {k.lower(): v for k, v in (headers or {}).items()}.get("retry-after")
        retry = _retry_seconds(extra.get("retry_after", given))
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != "retry-after"}
        headers["Retry-After"] = str(retry)
        extra["retry_after"] = retry
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE, headers=headers)


def _retry_seconds(value: Any) -> int:
    try:
        return max(1, round(float(value)))
    except (TypeError, ValueError, OverflowError):
        return 1


def validation_problem(exc: ValidationError) -> web.Response:
    """A 422 problem naming each invalid field."""
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False)
    ]
    fields = ", ".join(error["field"] or "body" for error in errors)
    return problem(422, "Unprocessable Content", f"invalid fields: {fields}", errors=errors)


def error_response(exc: BaseException) -> web.Response | None:
    """Map an error to its problem response; None for an unexpected error."""
    if isinstance(exc, TooManyRequests):
        return problem(exc.status, exc.title, exc.detail, retry_after=exc.retry_after)
    if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
        # A body aiohttp could not parse (a bad chunk, a broken encoding). Its
        # message quotes the bytes sent, so it is neither echoed nor logged.
        return problem(400, "Bad Request", "the request body is malformed")
    if isinstance(exc, ClientError):
        extra = {k: v for k, v in exc.extra.items() if k not in {"title", "status", "detail"}}
        return problem(exc.status, exc.title, exc.detail, **extra)
    if isinstance(exc, ValidationError):
        return validation_problem(exc)
    if isinstance(exc, DeadlineExceeded):
        return problem(504, "Gateway Timeout", str(exc) or "the deadline passed")
    if isinstance(exc, ServiceUnavailable):
        return problem(503, "Service Unavailable", str(exc) or "a dependency is unavailable")
    return None


@web.middleware
async def request_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Give each request a correlation id, log it once, and map errors to problems."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id
    started = time.perf_counter()
    with log_context(correlation=request_id):
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            response = _http_exception(exc)
        except Exception as exc:
            mapped = error_response(exc)
            if mapped is None:
                logger.exception("%s %s failed", request.method, request.path)
                mapped = problem(500, "Internal Server Error", "the request failed unexpectedly")
            response = mapped
        response.headers[REQUEST_ID_HEADER] = request_id
        if response.status == 429 and not response.prepared:
            # Whatever refused, a client told to slow down is told for how long.
            response.headers.setdefault("Retry-After", "1")
        if not request.path.startswith(("/healthz", "/readyz", "/metrics")):
            logger.info(
                "%s %s -> %d in %.1f ms",
                request.method,
                request.path,
                response.status,
                (time.perf_counter() - started) * 1000,
            )
        return response


def _http_exception(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        return exc
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
    return problem(exc.status, exc.reason, exc.text or exc.reason, headers=headers)
