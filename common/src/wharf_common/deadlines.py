"""Absolute deadlines, set once at the edge and checked at every hop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wharf_common.errors import DeadlineExceeded


def now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def deadline_in(seconds: float) -> datetime:
    """Return the absolute deadline that lies `seconds` from now."""
    return now() + timedelta(seconds=seconds)


def remaining(deadline: datetime | None) -> float | None:
    """Seconds left before `deadline`, never negative; None when there is none."""
    if deadline is None:
        return None
    return max(0.0, (deadline - now()).total_seconds())


def expired(deadline: datetime | None) -> bool:
    """True when `deadline` has passed."""
    return deadline is not None and deadline <= now()


def check(deadline: datetime | None) -> None:
    """Raise DeadlineExceeded when `deadline` has passed."""
    if expired(deadline):
        raise DeadlineExceeded(f"deadline {deadline.isoformat() if deadline else ''} passed")
