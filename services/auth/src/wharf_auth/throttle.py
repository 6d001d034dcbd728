"""Login throttling per account and per address, kept in PostgreSQL.

Each failed login counts against the account (the email asked for, whether
or not it exists) and the client address within a window. Past the free
attempts, every further failure locks the subject for twice as long as the
one before, up to a maximum; a login while locked is refused with 429.
Accounts are recorded by a hash of the email, so guesses are not stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from wharf_common import deadlines
from wharf_common.db import Connection
from wharf_common.errors import TooManyRequests


@dataclass(frozen=True)
class Policy:
    """How many failures are free and how long the locks grow."""

    window: float
    account_free: int
    address_free: int
    base_delay: float
    max_delay: float


def subjects(email: str, address: str | None) -> list[tuple[str, str]]:
    """The throttled subjects of one login attempt."""
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    found = [("account", account)]
    if address:
        found.append(("address", address))
    return found


async def check(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Raise TooManyRequests while any subject is locked."""
    rows = await conn.fetch(
        "SELECT locked_until FROM auth.login_failures"
        " WHERE (kind, subject) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        " AND locked_until > now()",
        [k for k, _ in keys],
        [s for _, s in keys],
    )
    if rows:
        until = max(row["locked_until"] for row in rows)
        retry = max(1.0, (until - deadlines.now()).total_seconds())
        raise TooManyRequests("too many failed logins; try again later", retry_after=retry)


async def record_failure(conn: Connection, keys: list[tuple[str, str]], policy: Policy) -> None:
    """Count a failed login against every subject and lock those past their free attempts."""
    for kind, subject in keys:
        free = policy.account_free if kind == "account" else policy.address_free
        row = await conn.fetchrow(
            "INSERT INTO auth.login_failures (kind, subject, failures, window_start)"
            " VALUES ($1, $2, 1, now())"
            " ON CONFLICT (kind, subject) DO UPDATE SET"
            "  failures = CASE WHEN login_failures.window_start < now() - $3::interval"
            "   AND (login_failures.locked_until IS NULL OR login_failures.locked_until < now())"
            "   THEN 1 ELSE login_failures.failures + 1 END,"
            "  window_start = CASE WHEN login_failures.window_start < now() - $3::interval"
            "   THEN now() ELSE login_failures.window_start END"
            " RETURNING failures",
            kind,
            subject,
            timedelta(seconds=policy.window),
        )
        assert row is not None
        over = row["failures"] - free
        if over < 0:
            continue
        delay = min(policy.max_delay, policy.base_delay * 2**over)
        await conn.execute(
            "UPDATE auth.login_failures SET locked_until = now() + $3::interval"
            " WHERE kind = $1 AND subject = $2",
            kind,
            subject,
            timedelta(seconds=delay),
        )


async def clear_account(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Forget an account's failures after a successful login (addresses keep theirs)."""
    accounts = [subject for kind, subject in keys if kind == "account"]
    await conn.execute(
        "DELETE FROM auth.login_failures WHERE kind = 'account' AND subject = ANY($1::text[])",
        accounts,
    )
