"""Token-bucket rate limits shared by every gateway task, held in Redis.

One Lua script refills and takes from a bucket atomically, with Redis's own
clock, so several gateway tasks (on several machines) share one limit per
tenant without races or clock skew. When Redis cannot be reached the limit
is not enforced and a warning is logged: losing the limiter must not take
the whole API down.

A busy bucket would cost a Redis round trip on every request, so a task
that sees steady traffic takes a few tokens at once (a lease) and spends
them locally for a short while. Leases come out of the shared bucket, so
the tasks together never admit more than the limit; a lease that expires
unspent only wastes its few tokens. A quiet bucket leases one token at a
time, which is exactly the plain token bucket. Likewise a refusal is
remembered until the bucket could next hand out a token (for a quarter of
a second at most), so a tenant hammering past its limit does not hammer
Redis too.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket. ARGV: rate per second, burst, tokens wanted (at least one).
# Takes as many of the wanted tokens as the bucket holds, or none when it
# holds less than one. Returns {tokens taken, milliseconds until one is available}.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local taken = 0
local wait = 0
if tokens >= 1 then
  taken = math.min(want, math.floor(tokens))
  tokens = tokens - taken
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {taken, wait}
"""

# A lease covers about this much of the task's own recent traffic...
LEASE_SECONDS = 0.05
# ...is never more than this share of the bucket's burst...
LEASE_SHARE_OF_BURST = 0.1
# ...and is spent within this long, or wasted.
LEASE_LIFETIME = 0.25
# How often a bucket's recent request rate is re-estimated.
_RATE_WINDOW = 1.0
# Local state is pruned of idle buckets once it holds this many.
_MAX_LOCAL_BUCKETS = 10_000


@dataclass(frozen=True)
class Decision:
    """Whether a request may go ahead, and if not, how long to wait."""

    allowed: bool
    retry_after: float


@dataclass
class _Local:
    """What one task holds of a bucket: leased tokens and its recent request rate."""

    tokens: int = 0
    expires: float = 0.0
    refused_until: float = 0.0
    window_start: float = 0.0
    seen: int = 0
    rate: float = 0.0

    def count(self, now: float) -> None:
        if now - self.window_start >= _RATE_WINDOW:
            elapsed = now - self.window_start
            self.rate = self.seen / elapsed if self.window_start and elapsed < 10 else 0.0
            self.window_start, self.seen = now, 0
        self.seen += 1


class RateLimiter:
    """Takes tokens from named buckets in Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_TOKEN_BUCKET)
        self._local: dict[str, _Local] = {}

    async def take(self, bucket: str, *, rate: float, burst: int) -> Decision:
        """Take one token from `bucket`; fails open when Redis is away."""
        now = time.monotonic()
        local = self._local.get(bucket)
        if local is None:
            if len(self._local) >= _MAX_LOCAL_BUCKETS:
                self._prune(now)
            local = self._local[bucket] = _Local()
        local.count(now)
        if local.tokens > 0 and now < local.expires:
            local.tokens -= 1
            return Decision(True, 0.0)
        if now < local.refused_until:
            return Decision(False, 1.0)

        want = 1 + self._lease_size(local, burst)
        try:
            taken, wait = await self._script(
                keys=[f"{self.prefix}:{bucket}"], args=[rate, burst, want]
            )
        except (RedisError, OSError) as exc:
            logger.warning("rate limit not enforced: Redis is unavailable (%s)", type(exc).__name__)
            return Decision(True, 0.0)
        taken = int(taken)
        if taken < 1:
            wait_seconds = int(wait) / 1000
            local.refused_until = time.monotonic() + min(wait_seconds, LEASE_LIFETIME)
            return Decision(False, max(1.0, math.ceil(wait_seconds)))
        local.tokens = taken - 1
        local.expires = time.monotonic() + LEASE_LIFETIME
        return Decision(True, 0.0)

    @staticmethod
    def _lease_size(local: _Local, burst: int) -> int:
        """Extra tokens worth taking now: none for a quiet bucket."""
        expected = int(local.rate * LEASE_SECONDS)
        return max(0, min(expected, int(burst * LEASE_SHARE_OF_BURST)))

    def _prune(self, now: float) -> None:
        idle = [
            name
            for name, local in self._local.items()
            if now >= local.expires and now - local.window_start >= _RATE_WINDOW
        ]
        for name in idle:
            del self._local[name]
        if len(self._local) >= _MAX_LOCAL_BUCKETS:
            self._local.clear()
