"""The error hierarchy shared by every service.

Client errors carry an HTTP status and travel back over RPC unchanged, so the
gateway can answer with the status the owning service chose. Permanent errors
send a message straight to the dead-letter queue; transient ones are retried.
"""

from __future__ import annotations

from typing import Any


class WharfError(Exception):
    """Base of every error Wharf raises on purpose."""


class ClientError(WharfError):
    """A request that cannot succeed as sent; maps to a 4xx problem+json."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}

    def to_problem(self) -> dict[str, Any]:
        """Return the RFC 9457 problem document for this error."""
        return {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class BadRequest(ClientError):
    status = 400
    title = "Bad Request"


class Unauthorized(ClientError):
    status = 401
    title = "Unauthorized"


class Forbidden(ClientError):
    status = 403
    title = "Forbidden"


class NotFound(ClientError):
    status = 404
    title = "Not Found"


class Conflict(ClientError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(ClientError):
    status = 413
    title = "Payload Too Large"


class UnsupportedMediaType(ClientError):
    status = 415
    title = "Unsupported Media Type"


class Unprocessable(ClientError):
    status = 422
    title = "Unprocessable Content"


class TooManyRequests(ClientError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(WharfError):
    """A dependency cannot be reached right now (503)."""


class DeadlineExceeded(WharfError):
    """The work's absolute deadline passed before it could finish (504)."""


class StartupError(WharfError):
    """A service cannot start as configured; the message says which setting to fix."""


class InvalidMessage(WharfError):
    """A message that can never be handled: it goes to the dead-letter queue."""


class TransientError(WharfError):
    """A failure worth retrying later, such as a dependency that is briefly away."""


_CLIENT_ERRORS: dict[int, type[ClientError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
    )
}


def client_error_from(status: int, detail: str, extra: dict[str, Any] | None = None) -> ClientError:
    """Rebuild a client error that crossed the bus as a status and a detail."""
    if status == TooManyRequests.status:
        return TooManyRequests(detail, retry_after=float((extra or {}).get("retry_after", 1)))
    error = _CLIENT_ERRORS.get(status, ClientError)(detail, extra=extra)
    if type(error) is ClientError:
        error.status = status
    return error
