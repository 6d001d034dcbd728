"""Delivery signatures: HMAC-SHA256 over the timestamp and the body, per-endpoint secret.

The header reads ``Wharf-Signature: t=<unix seconds>,v1=<hex digest>``, where
the digest is HMAC-SHA256(secret, ``<t>.`` + body). A receiver recomputes it
and refuses a timestamp outside its tolerance, so a captured delivery
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "Wharf-Signature"
DEFAULT_TOLERANCE = 300


def new_secret() -> str:
    """A fresh endpoint secret, shown to the tenant once."""
    return "whsec_" + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The Wharf-Signature header value for `body`."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={digest(secret, t, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` with `secret` within `tolerance` seconds of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    return hmac.compare_digest(digest(secret, timestamp, body), fields.get("v1", ""))
