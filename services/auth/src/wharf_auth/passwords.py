"""Password hashing with argon2id, run off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hashes and verifies passwords; verifying an unknown account costs the same."""

    def __init__(self, *, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        # A login for an email nobody has checks against this, so the answer
        # takes as long as for a real account with a wrong password.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of `password`."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when `password` matches `stored`; None checks a dummy hash and is False."""
        target = stored if stored is not None else self._dummy
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(ok) and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was hashed with weaker parameters than the current ones."""
        return self._hasher.check_needs_rehash(stored)
